//! The protocol check in front of a console endpoint (a real mTLS server on 127.0.0.1): the
//! upgraded connection still works, and the answer names the server's protocol.

use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maguey_rpc::console::{self, console_http_client};
use maguey_rpc::version::{check_protocol, HEADER, PROTOCOL_VERSION};
use maguey_rpc::*;
use std::net::{IpAddr, Ipv4Addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Echoes what the client writes, upper-cased.
async fn echo(mut req: Request) -> Response {
    if !console::wants_upgrade(req.headers()) {
        return console::upgrade_required();
    }
    let upgrade = console::take_upgrade(&mut req);
    tokio::spawn(async move {
        let Ok(mut s) = upgrade.await else { return };
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let up = buf[..n].to_ascii_uppercase();
            if s.write_all(&up).await.is_err() {
                break;
            }
            let _ = s.flush().await;
        }
    });
    console::switching_protocols()
}

#[tokio::test]
async fn console_upgrade_passes_the_protocol_check() {
    let ca = ClusterCa::generate("c").unwrap();
    let server_id = ca.issue("node1", &[LOCAL]).unwrap();
    let client_id = ca.issue("master", &[LOCAL]).unwrap();
    let listener = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/console/{name}", get(echo))
        .layer(axum::middleware::from_fn(check_protocol));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        server_config(&server_id).unwrap(),
        router,
        async move {
            let _ = stopped.await;
        },
    ));

    let http = console_http_client(&client_id).unwrap();
    let url = format!("https://{addr}/console/web1");
    // Without the upgrade headers: the handler's own answer, with the server's version.
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::UPGRADE_REQUIRED);
    assert_eq!(
        resp.headers().get(HEADER).unwrap().to_str().unwrap(),
        PROTOCOL_VERSION.to_string()
    );
    // The console itself (the client sends its version header).
    let mut stream = console::connect(&http, &url).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    stream.flush().await.unwrap();
    let mut got = [0u8; 5];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"HELLO");
    drop(stream);

    let _ = stop.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
}
