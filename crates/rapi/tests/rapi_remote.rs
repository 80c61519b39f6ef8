//! The master API through the Remote API's port (what `maguey --cluster URL` uses):
//! `MasterClient::remote` with a RAPI user instead of a node certificate.

mod common;

use common::RapiLab;
use maguey_client::{ClientError, MasterClient};
use maguey_model::OpCode;
use maguey_ops::query::Resource;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_api_with_a_rapi_user() {
    let l = RapiLab::up(2);
    l.add_users("viewer viewpw read\n");
    let ca = std::fs::read_to_string(&l.env["MAGUEY_RAPI_CA"]).unwrap();
    let url = &l.env["MAGUEY_RAPI_URL"];
    let (u, p) = l.user();
    let c = MasterClient::remote(url, u, p, Some(&ca)).unwrap();
    let serial0 = l.serial();

    // Queries and a job, as the CLI does them.
    let r = c
        .query(Resource::Node, vec![], vec!["name".into(), "role".into()])
        .await
        .unwrap();
    assert_eq!(r.rows.len(), 2);
    let id = c
        .submit(
            vec![OpCode::TestDelay(maguey_model::OpTestDelay {
                duration: 0.2,
                on_master: true,
                on_nodes: vec!["node2".into()],
                repeat: 0,
                fail: false,
            })],
            0,
        )
        .await
        .unwrap();
    let mut job = c.job(id).await.unwrap();
    for _ in 0..100 {
        if job.status.is_finalized() {
            break;
        }
        if let Some(j) = c
            .wait(id, Some(job.status), 0, Duration::from_secs(5))
            .await
            .unwrap()
        {
            job = j;
        }
    }
    assert_eq!(job.status.as_str(), "success");
    assert!(!c.jobs(false).await.unwrap().is_empty());
    assert!(c
        .fields("instance")
        .await
        .unwrap()
        .iter()
        .any(|(n, _)| n == "pnode"));

    // Refusals: wrong password, a reader writing, cluster destroy; nothing changes.
    let bad = MasterClient::remote(url, u, "wrong", Some(&ca)).unwrap();
    match bad.jobs(false).await {
        Err(ClientError::Refused(m)) => assert!(m.contains("401"), "{m}"),
        other => panic!("wrong password: {:?}", other.map(|_| ())),
    }
    let viewer = MasterClient::remote(url, "viewer", "viewpw", Some(&ca)).unwrap();
    assert!(viewer.jobs(false).await.is_ok());
    match viewer
        .submit(
            vec![OpCode::ClusterVerify(maguey_model::OpClusterVerify {
                skip_checks: vec![],
            })],
            0,
        )
        .await
    {
        Err(ClientError::Refused(m)) => assert!(m.contains("403"), "{m}"),
        other => panic!("reader submitting: {other:?}"),
    }
    match c
        .submit(
            vec![OpCode::ClusterDestroy(maguey_model::OpClusterDestroy {})],
            0,
        )
        .await
    {
        Err(ClientError::Refused(m)) => assert!(m.contains("403"), "{m}"),
        other => panic!("cluster destroy: {other:?}"),
    }
    assert_eq!(l.serial(), serial0);

    // A CA that did not sign the master's certificate: the connection is refused.
    let other_ca = maguey_rpc::ca::ClusterCa::generate("other").unwrap();
    let mitm = MasterClient::remote(url, u, p, Some(&other_ca.cert_pem)).unwrap();
    assert!(matches!(
        mitm.jobs(false).await,
        Err(ClientError::Unreachable(_))
    ));

    // From the environment, as `maguey --cluster URL` would set it.
    std::env::set_var("MAGUEY_CLUSTER", url);
    std::env::set_var("MAGUEY_RAPI_CA", &l.env["MAGUEY_RAPI_CA"]);
    std::env::remove_var("MAGUEY_RAPI_USER");
    std::env::remove_var("MAGUEY_RAPI_PASSWORD");
    let creds = l.lab.dir.path().join("creds");
    std::fs::write(&creds, format!("# RAPI user\n{u} {p}\n")).unwrap();
    std::env::set_var("MAGUEY_RAPI_CREDENTIALS", &creds);
    let e = MasterClient::from_env_or_state_dir(std::path::Path::new("/nonexistent")).unwrap();
    assert_eq!(e.base_url(), url.as_str());
    assert!(e.jobs(false).await.is_ok());
}
