//! Real mTLS servers on 127.0.0.1:0.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use maguey_rpc::ca::common_name_der;
use maguey_rpc::join::{secret_matches, JOIN_PATH};
use maguey_rpc::server::{with_peer_cert_required, PEER_CERT_REQUIRED};
use maguey_rpc::*;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TIMEOUT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(id: &NodeIdentity, router: Router) -> Server {
        let listener = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = server_config(id).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, tls, router, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}

async fn whoami(PeerIdentity(peer): PeerIdentity) -> Json<serde_json::Value> {
    let peer = peer.unwrap();
    Json(json!({"cn": peer.common_name, "fp": peer.fingerprint}))
}

async fn rpc(Json(req): Json<NodeRequest>) -> Json<RpcReply> {
    Json(match req {
        NodeRequest::Version => RpcReply::Ok(json!({
            "version": "test", "protocol": 1, "node_name": "master"
        })),
        other => RpcReply::Error(format!("{} not supported", other.procedure())),
    })
}

fn protected_router() -> Router {
    with_peer_cert_required(
        Router::new()
            .route("/whoami", get(whoami))
            .route("/rpc", post(rpc)),
    )
}

fn client_without_cert(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(maguey_rpc::tls::client_config_with(ca_pem, None).unwrap())
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .unwrap()
}

#[test]
fn ca_files_fingerprint_and_issue() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate("cluster.example.com").unwrap();
    ca.save(dir.path()).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let loaded = ClusterCa::load(dir.path()).unwrap();
    assert_eq!(loaded.cert_pem, ca.cert_pem);
    assert_eq!(ca.fingerprint().len(), 64);
    assert_eq!(fingerprint_pem(&ca.cert_pem).unwrap(), ca.fingerprint());

    let id = loaded.issue("node1.example.com", &[LOCAL]).unwrap();
    assert_eq!(id.ca_fingerprint(), ca.fingerprint());
    assert_eq!(id.common_name().unwrap(), "node1.example.com");
    let der = maguey_rpc::ca::cert_der_from_pem(&id.cert_pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| format!("{n}"))
        .collect();
    assert!(
        names.iter().any(|n| n.contains("node1.example.com")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.contains("7f:00:00:01")), "{names:?}");

    let ndir = tempfile::tempdir().unwrap();
    id.save(ndir.path()).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ndir.path().join("node.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let back = NodeIdentity::load(ndir.path()).unwrap();
    assert_eq!(back.cert_pem, id.cert_pem);
    assert_eq!(back.key_pem, id.key_pem);

    // A key that does not belong to the CA certificate is refused.
    let other = ClusterCa::generate("other").unwrap();
    let mixed = ClusterCa {
        cert_pem: ca.cert_pem.clone(),
        key_pem: other.key_pem,
    };
    assert!(mixed.issue("x", &[]).is_err());
    assert!(ClusterCa::load(&dir.path().join("missing")).is_err());
    assert!(fingerprint_pem("garbage").is_err());
}

#[test]
fn csr_signing_sets_subject_from_ca() {
    let ca = ClusterCa::generate("c").unwrap();
    let (csr, key) = NodeIdentity::new_csr("evil.example.com").unwrap();
    let cert = ca.sign_csr(&csr, "node2", &[LOCAL]).unwrap();
    let der = maguey_rpc::ca::cert_der_from_pem(&cert).unwrap();
    assert_eq!(common_name_der(&der).as_deref(), Some("node2"));
    let id = NodeIdentity {
        cert_pem: cert,
        key_pem: key,
        ca_pem: ca.cert_pem.clone(),
    };
    // The signed certificate fits the CSR's key.
    client_config(&id).unwrap();
    server_config(&id).unwrap();
    assert!(ca.sign_csr("not a csr", "node2", &[]).is_err());
    // A CSR whose signature does not verify is refused.
    let mut lines: Vec<String> = csr.lines().map(str::to_string).collect();
    let n = lines.len();
    let line = &mut lines[n - 3]; // the last full base64 line lies in the signature
    let c = line.remove(60);
    line.insert(60, if c == 'A' { 'B' } else { 'A' });
    let tampered = lines.join("\n");
    assert!(ca.sign_csr(&tampered, "node2", &[]).is_err());
}

#[tokio::test]
async fn mtls_access_control() {
    let ca = ClusterCa::generate("c").unwrap();
    let master = ca.issue("master", &[LOCAL]).unwrap();
    let server = Server::start(&master, protected_router()).await;

    // A node certificate from the cluster CA: accepted, identity passed to the handler.
    let node = ca.issue("node1", &[LOCAL]).unwrap();
    let client = RpcClient::new(&node, TIMEOUT).unwrap();
    let who: serde_json::Value = client.get_json(&server.url("/whoami")).await.unwrap();
    assert_eq!(who["cn"], "node1");
    assert_eq!(who["fp"], node.fingerprint());

    // No client certificate: 403.
    let anon = client_without_cert(&ca.cert_pem);
    let resp = anon.get(server.url("/whoami")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.text().await.unwrap(), PEER_CERT_REQUIRED);

    // A client certificate from another CA: the handshake fails.
    let other_ca = ClusterCa::generate("other").unwrap();
    let foreign = other_ca.issue("intruder", &[LOCAL]).unwrap();
    let intruder = NodeIdentity {
        ca_pem: ca.cert_pem.clone(), // trusts the right server...
        ..foreign.clone()            // ...but presents a foreign certificate
    };
    let client2 = RpcClient::new(&intruder, TIMEOUT).unwrap();
    let r: Result<serde_json::Value, RpcError> = client2.get_json(&server.url("/whoami")).await;
    assert!(r.is_err(), "foreign client cert must be refused: {r:?}");

    // A client that trusts another CA refuses the server.
    let client3 = RpcClient::new(&foreign, TIMEOUT).unwrap();
    let r: Result<serde_json::Value, RpcError> = client3.get_json(&server.url("/whoami")).await;
    assert!(matches!(r, Err(RpcError::Unreachable(_))), "{r:?}");

    // Garbage instead of a TLS handshake does not kill the server.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let _ = s.shutdown().await;
    }
    let who: serde_json::Value = client.get_json(&server.url("/whoami")).await.unwrap();
    assert_eq!(who["cn"], "node1");

    server.stop().await;
}

#[tokio::test]
async fn rpc_calls() {
    let ca = ClusterCa::generate("c").unwrap();
    let master = ca.issue("master", &[LOCAL]).unwrap();
    let server = Server::start(&master, protected_router()).await;
    let client = RpcClient::new(&master, TIMEOUT).unwrap();
    let addr = server.addr.to_string();

    let v: VersionInfo = client.call(&addr, &NodeRequest::Version).await.unwrap();
    assert_eq!(v.node_name, "master");
    let e = client
        .call::<serde_json::Value>(&addr, &NodeRequest::OsDiagnose)
        .await
        .unwrap_err();
    assert_eq!(e, RpcError::Remote("os_diagnose not supported".into()));
    // Wrong answer type: protocol error.
    let e = client
        .call::<Vec<String>>(&addr, &NodeRequest::Version)
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Protocol(_)), "{e:?}");

    // A closed port is unreachable; results keep the order of the addresses.
    let closed = {
        let l = std::net::TcpListener::bind((LOCAL, 0)).unwrap();
        l.local_addr().unwrap().to_string()
    };
    let results: Vec<Result<VersionInfo, RpcError>> = client
        .call_many(&[addr.clone(), closed, addr.clone()], &NodeRequest::Version)
        .await;
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok());
    assert!(
        matches!(results[1], Err(RpcError::Unreachable(_))),
        "{:?}",
        results[1]
    );
    assert!(results[2].is_ok());

    server.stop().await;
}

struct JoinState {
    ca: ClusterCa,
    secret_sha256: String,
}

async fn join_handler(
    State(st): State<Arc<JoinState>>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<JoinResponse>, (StatusCode, Json<serde_json::Value>)> {
    if !secret_matches(&req.secret, &st.secret_sha256) {
        return Err((
            StatusCode::FORBIDDEN,
            Json(json!({"error": "invalid join token"})),
        ));
    }
    let cert = st
        .ca
        .sign_csr(&req.csr_pem, &req.node_name, &[LOCAL])
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
        })?;
    Ok(Json(JoinResponse {
        cert_pem: cert,
        ca_pem: st.ca.cert_pem.clone(),
        master_name: "master".into(),
        master_certificate: String::new(),
    }))
}

#[tokio::test]
async fn join_flow() {
    let ca = ClusterCa::generate("c").unwrap();
    let master = ca.issue("master", &[LOCAL]).unwrap();
    let (token, hash) = new_token(&ca.fingerprint());
    let (secret, fp) = parse_token(&token).unwrap();
    assert_eq!(fp, ca.fingerprint());
    assert_eq!(secret_sha256(&secret), hash);

    let state = Arc::new(JoinState {
        ca: ca.clone(),
        secret_sha256: hash,
    });
    let router = Router::new()
        .route(JOIN_PATH, post(join_handler))
        .with_state(state)
        .merge(join_ca_router(ca.cert_pem.clone()))
        .merge(protected_router());
    let server = Server::start(&master, router).await;
    let base = format!("https://{}", server.addr);

    let id = join(&base, &token, "node3").await.unwrap();
    assert_eq!(id.common_name().unwrap(), "node3");
    assert_eq!(id.ca_pem, ca.cert_pem);
    // The new identity works for mTLS.
    let client = RpcClient::new(&id, TIMEOUT).unwrap();
    let who: serde_json::Value = client.get_json(&server.url("/whoami")).await.unwrap();
    assert_eq!(who["cn"], "node3");

    // A token carrying another CA's fingerprint: refused before sending the secret.
    let other = ClusterCa::generate("other").unwrap();
    let bad_fp = format!("{secret}.{}", other.fingerprint());
    let e = join(&base, &bad_fp, "node4").await.unwrap_err();
    assert!(e.to_string().contains("does not match the token"), "{e}");

    // A wrong secret: the master refuses.
    let (wrong, _) = new_token(&ca.fingerprint());
    let e = join(&base, &wrong, "node4").await.unwrap_err();
    assert_eq!(e, RpcError::Remote("invalid join token".into()));

    // Malformed tokens.
    assert!(join(&base, "nonsense", "node4").await.is_err());
    assert!(parse_token("abc.def").is_err());
    assert!(parse_token(&secret).is_err());

    server.stop().await;
}

#[tokio::test]
async fn clients_refuse_a_server_presenting_another_nodes_certificate() {
    let ca = ClusterCa::generate("c").unwrap();
    // node2 owns 127.0.0.1 (the address dialled); node3's certificate names another address.
    let node2 = ca.issue("node2", &[LOCAL]).unwrap();
    let node3 = ca
        .issue("node3", &["127.0.0.3".parse::<IpAddr>().unwrap()])
        .unwrap();
    let master = ca.issue("master", &["127.0.0.9".parse().unwrap()]).unwrap();
    let client = RpcClient::new(&master, TIMEOUT).unwrap();

    let real = Server::start(&node2, protected_router()).await;
    let v: VersionInfo = client
        .call(&real.addr.to_string(), &NodeRequest::Version)
        .await
        .expect("the real node2");
    assert_eq!(v.node_name, "master"); // (the test router's canned answer)
    real.stop().await;

    // node3 poses as node2 (same address, its own valid cluster certificate): refused.
    let impostor = Server::start(&node3, protected_router()).await;
    let r = client
        .call::<VersionInfo>(&impostor.addr.to_string(), &NodeRequest::Version)
        .await;
    match r {
        Err(RpcError::Unreachable(m)) => assert!(m.contains("certificate"), "{m}"),
        other => panic!("a server with another node's certificate was accepted: {other:?}"),
    }
    // The admin certificate is a client certificate only: a server cannot use it.
    let admin = ca.issue_admin().unwrap();
    let fake = Server::start(&admin, protected_router()).await;
    let r = client
        .call::<VersionInfo>(&fake.addr.to_string(), &NodeRequest::Version)
        .await;
    assert!(matches!(r, Err(RpcError::Unreachable(_))), "{r:?}");
    impostor.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn admin_certificates_are_told_apart_from_node_certificates() {
    let ca = ClusterCa::generate("c").unwrap();
    let server_id = ca.issue("master", &[LOCAL]).unwrap();
    let router = Router::new()
        .route("/whoami", get(whoami))
        .layer(axum::middleware::from_fn(maguey_rpc::require_admin_cert));
    let server = Server::start(&server_id, router).await;
    let admin = ca.issue_admin().unwrap();
    let dir = tempfile::tempdir().unwrap();
    admin.save_admin(dir.path()).unwrap();
    let loaded = NodeIdentity::load_admin(dir.path()).unwrap();
    assert_eq!(loaded.fingerprint(), admin.fingerprint());
    use std::os::unix::fs::PermissionsExt;
    for f in ["admin.pem", "admin.key"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let who: serde_json::Value = RpcClient::new(&loaded, TIMEOUT)
        .unwrap()
        .get_json(&server.url("/whoami"))
        .await
        .expect("the admin");
    assert_eq!(who["fp"], admin.fingerprint());
    // A node certificate (even the master's own) is not an admin's.
    for id in [&server_id, &ca.issue("node2", &[LOCAL]).unwrap()] {
        let e = RpcClient::new(id, TIMEOUT)
            .unwrap()
            .get_json::<serde_json::Value>(&server.url("/whoami"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("admin client certificate"), "{e}");
    }
    // A node's CSR asking for the admin OU gets a node subject anyway.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(
        rcgen::DnType::OrganizationalUnitName,
        maguey_rpc::ca::ADMIN_OU,
    );
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let cert = ca.sign_csr(&csr, "node5", &[LOCAL]).unwrap();
    let der = maguey_rpc::ca::cert_der_from_pem(&cert).unwrap();
    assert!(!maguey_rpc::ca::is_admin_der(&der));
    // A node directory is not an admin's.
    let ndir = tempfile::tempdir().unwrap();
    server_id.save(ndir.path()).unwrap();
    std::fs::copy(ndir.path().join("node.pem"), ndir.path().join("admin.pem")).unwrap();
    std::fs::copy(ndir.path().join("node.key"), ndir.path().join("admin.key")).unwrap();
    assert!(NodeIdentity::load_admin(ndir.path()).is_err());
    server.stop().await;
}

#[tokio::test]
async fn a_connection_flood_from_one_address_leaves_room_for_others() {
    use tokio::io::AsyncWriteExt;
    let ca = ClusterCa::generate("c").unwrap();
    // The server listens on every loopback address; the flood comes from 127.0.0.1.
    let server_id = ca
        .issue("master", &[LOCAL, "127.0.0.2".parse().unwrap()])
        .unwrap();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        server_config(&server_id).unwrap(),
        protected_router(),
        async move {
            let _ = rx.await;
        },
    ));
    // Many connections that never finish their TLS handshake or request.
    let mut flood = Vec::new();
    for _ in 0..(maguey_rpc::limits::MAX_CONNECTIONS_PER_PEER + 20) {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let _ = s.write_all(b"\x16\x03\x01").await; // a TLS record header, then nothing
        flood.push(s);
    }
    // One more from the flooding address: closed at once.
    {
        use tokio::io::AsyncReadExt;
        let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let _ = extra.write_all(b"\x16\x03\x01").await;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
            .await
            .expect("the server closes a connection over the per-address bound");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    // Another client, from another address, is still served.
    let node = ca.issue("node1", &[LOCAL]).unwrap();
    let tls =
        maguey_rpc::tls::client_config_with(&ca.cert_pem, Some((&node.cert_pem, &node.key_pem)))
            .unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address("127.0.0.3".parse::<IpAddr>().unwrap())
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let who: serde_json::Value = http
        .get(format!("https://127.0.0.2:{port}/whoami"))
        .send()
        .await
        .expect("served despite the flood")
        .json()
        .await
        .unwrap();
    assert_eq!(who["cn"], "node1");
    drop(flood);
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
