//! Live migration with QEMU: the target waits for the state, the source sends RAM (and,
//! with local disks, mirrors them over NBD first); both finalize afterwards.

use super::tls::{Endpoint, TlsIds};
use super::{KvmHypervisor, RunFile, MIB};
use crate::error::{NodeError, NodeResult};
use crate::hypervisor::MigrationTarget;
use crate::qmp::MigrationParameters;
use maguey_model::params::KVM_MIGRATION_CAPS;
use maguey_rpc::{InstanceRuntime, MigrationStatus};
use std::time::{Duration, Instant};

impl KvmHypervisor {
    /// The RAM phase of a migration; waits until QEMU reports it completed.
    pub(super) async fn migrate_ram(
        &self,
        rf: &RunFile,
        target: &str,
        port: u16,
        bandwidth: u64,
        downtime: u64,
        tls: Option<(&str, &TlsIds)>,
    ) -> NodeResult<MigrationStatus> {
        let name = rf.name.as_str();
        {
            let mut q = self.qmp(name).await?;
            q.migrate_set_parameters(&MigrationParameters {
                // A huge bandwidth (from a request) saturates instead of overflowing.
                max_bandwidth: Some(bandwidth.max(1).saturating_mul(MIB)),
                downtime_limit: Some(downtime),
                // Empty: plain TCP (also after an incoming migration over TLS).
                tls_creds: Some(tls.map_or("", |(_, ids)| &ids.creds).to_string()),
                tls_hostname: Some(tls.map_or("", |(peer, _)| peer).to_string()),
                tls_authz: None,
            })
            .await?;
            q.migrate(&format!("tcp:{target}:{port}")).await?;
        }
        // Generous: four times what the RAM needs at the bandwidth limit, at least 10 min.
        let secs = (rf.memory / bandwidth.max(1)).saturating_mul(4).max(600);
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A fresh connection per poll keeps QMP free for info queries meanwhile.
            let m = self.qmp(name).await?.query_migrate().await?;
            let status = m.status.clone().unwrap_or_default();
            match status.as_str() {
                "completed" => {
                    let ram = m.ram.unwrap_or_default();
                    return Ok(MigrationStatus {
                        status,
                        total_time: m.total_time.unwrap_or(0),
                        downtime: m.downtime.unwrap_or(0),
                        transferred: ram.transferred,
                        ..Default::default()
                    });
                }
                "failed" | "cancelled" => {
                    return Err(NodeError::command_failed(format!(
                        "migration of instance {name} {status}: {}",
                        m.error_desc.unwrap_or_default()
                    )))
                }
                _ if Instant::now() > deadline => {
                    let _ = self.qmp(name).await?.migrate_cancel().await;
                    return Err(NodeError::timeout(format!(
                        "migration of instance {name} did not finish in {secs} s"
                    )));
                }
                _ => {}
            }
        }
    }

    /// Mirrors every disk into the target's NBD export of the same name (write-blocking, so
    /// the copies stay in sync once ready); returns (bytes, milliseconds) once all are ready.
    pub(super) async fn mirror_disks(
        &self,
        name: &str,
        target: &str,
        nbd_port: u16,
        disks: usize,
        tls: Option<(&str, &TlsIds)>,
    ) -> NodeResult<(u64, u64)> {
        let t = Instant::now();
        let mut q = self.qmp(name).await?;
        for i in 0..disks {
            // A failed earlier attempt may have left its NBD client node behind.
            let _ = q
                .call(
                    "blockdev-del",
                    serde_json::json!({"node-name": format!("mirror{i}")}),
                )
                .await;
            let mut client = serde_json::json!({"driver": "nbd", "node-name": format!("mirror{i}"),
                "server": {"type": "inet", "host": target, "port": nbd_port.to_string()},
                "export": format!("disk{i}")});
            if let Some((peer, ids)) = tls {
                client["tls-creds"] = ids.creds.as_str().into();
                client["tls-hostname"] = peer.into();
            }
            q.call("blockdev-add", client).await?;
            q.call(
                "blockdev-mirror",
                serde_json::json!({"job-id": format!("mirror{i}"), "device": format!("disk{i}"),
                    "target": format!("mirror{i}"), "sync": "full",
                    "copy-mode": "write-blocking"}),
            )
            .await?;
        }
        drop(q);
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let jobs = self.qmp(name).await?.query_block_jobs().await?;
            let mirrors: Vec<_> = jobs
                .iter()
                .filter(|j| j.device.starts_with("mirror"))
                .collect();
            if mirrors.len() < disks {
                return Err(NodeError::command_failed(format!(
                    "a disk mirror of instance {name} stopped before it was in sync"
                )));
            }
            if mirrors.iter().all(|j| j.ready) {
                let bytes = mirrors.iter().map(|j| j.len).sum();
                return Ok((bytes, t.elapsed().as_millis() as u64));
            }
            if Instant::now() > deadline {
                return Err(NodeError::timeout(format!(
                    "the disk mirrors of instance {name} never got in sync"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Cancels this instance's disk mirror jobs and waits until they are gone.
    pub(super) async fn cancel_mirrors(&self, name: &str) {
        let Ok(mut q) = self.qmp(name).await else {
            return;
        };
        let Ok(jobs) = q.query_block_jobs().await else {
            return;
        };
        for j in jobs.iter().filter(|j| j.device.starts_with("mirror")) {
            let _ = q
                .call("block-job-cancel", serde_json::json!({"device": j.device}))
                .await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match q.query_block_jobs().await {
                Ok(jobs) if jobs.iter().any(|j| j.device.starts_with("mirror")) => {}
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Migration target: starts QEMU waiting for the instance's state (and exports its disks
    /// over NBD for a local-disk migration).
    pub(super) async fn accept(
        &self,
        inst: &InstanceRuntime,
        address: &str,
        port: u16,
        nbd_port: Option<u16>,
        tls_peer: Option<&str>,
    ) -> NodeResult<()> {
        let _guard = self.lock.lock().await;
        if self.running(&inst.name)?.is_some() {
            return Err(NodeError::conflict(format!(
                "instance {} is already running on node {}",
                inst.name, self.node_name
            )));
        }
        let uri = format!("tcp:{address}:{port}");
        let r = async {
            // Over TLS, QEMU listens only once its credentials are loaded.
            let incoming = if tls_peer.is_some() { "defer" } else { &uri };
            self.launch(inst, Some(incoming), nbd_port.is_some())
                .await?;
            let mut ids = None;
            if let Some(peer) = tls_peer {
                let pid = self.running(&inst.name)?.map_or(0, |rf| rf.pid);
                let tls = self
                    .add_tls_creds(&inst.name, pid, Endpoint::Server, peer)
                    .await?;
                let mut q = self.qmp(&inst.name).await?;
                q.migrate_set_parameters(&MigrationParameters {
                    tls_creds: Some(tls.creds.clone()),
                    tls_authz: Some(tls.authz.clone()),
                    ..Default::default()
                })
                .await?;
                q.call("migrate-incoming", serde_json::json!({ "uri": uri }))
                    .await?;
                ids = Some(tls);
            }
            if let Some(nbd) = nbd_port {
                let mut q = self.qmp(&inst.name).await?;
                let mut server = serde_json::json!({"addr": {"type": "inet",
                    "data": {"host": address, "port": nbd.to_string()}}});
                if let Some(tls) = &ids {
                    server["tls-creds"] = tls.creds.as_str().into();
                    server["tls-authz"] = tls.authz.as_str().into();
                }
                q.call("nbd-server-start", server).await?;
                for i in 0..inst.disks.len() {
                    q.call(
                        "block-export-add",
                        serde_json::json!({"type": "nbd", "id": format!("export-disk{i}"),
                            "node-name": format!("disk{i}"), "name": format!("disk{i}"),
                            "writable": true}),
                    )
                    .await?;
                }
            }
            Ok::<(), NodeError>(())
        }
        .await;
        if r.is_err() {
            let _ = self.stop_locked(&inst.name, Duration::ZERO).await;
        }
        r
    }

    /// Migration source: mirrors the disks (local-disk migration), then sends the RAM.
    pub(super) async fn migrate_out(
        &self,
        name: &str,
        to: MigrationTarget<'_>,
    ) -> NodeResult<MigrationStatus> {
        let MigrationTarget {
            target,
            port,
            bandwidth,
            downtime,
            nbd_port,
            tls_peer,
            caps,
        } = to;
        if let Some(bad) = caps
            .iter()
            .find(|c| !KVM_MIGRATION_CAPS.contains(&c.as_str()))
        {
            return Err(NodeError::bad_request(format!(
                "unknown migration capability '{bad}' (known: {})",
                KVM_MIGRATION_CAPS.join(", ")
            )));
        }
        let rf = self
            .running(name)?
            .ok_or_else(|| NodeError::not_found(format!("instance {name} is not running")))?;
        // Every known capability is set, on or off: QEMU keeps them from an earlier
        // migration of the same process.
        let states: Vec<_> = KVM_MIGRATION_CAPS
            .iter()
            .map(|c| serde_json::json!({"capability": c, "state": caps.iter().any(|x| x == c)}))
            .collect();
        self.qmp(name)
            .await?
            .call(
                "migrate-set-capabilities",
                serde_json::json!({ "capabilities": states }),
            )
            .await?;
        let disks = rf
            .argv
            .iter()
            .filter(|a| a.starts_with("driver=raw,node-name=disk"))
            .count();
        let ids = match tls_peer {
            Some(peer) => Some(
                self.add_tls_creds(name, rf.pid, Endpoint::Client, peer)
                    .await?,
            ),
            None => None,
        };
        let tls = tls_peer.zip(ids.as_ref());
        let mut disk_stats = (0, 0);
        if let Some(nbd) = nbd_port {
            match self.mirror_disks(name, target, nbd, disks, tls).await {
                Ok(s) => disk_stats = s,
                Err(e) => {
                    self.cancel_mirrors(name).await;
                    return Err(e);
                }
            }
        }
        let r = self
            .migrate_ram(&rf, target, port, bandwidth, downtime, tls)
            .await;
        if nbd_port.is_some() {
            // Ready mirrors cancelled once the source is paused leave the targets in
            // sync; on failure they are simply dropped.
            self.cancel_mirrors(name).await;
            // Their NBD clients disconnect now, so the target's NBD server stops at once
            // (a TLS session would otherwise wait for its peer when the target finalizes).
            if let Ok(mut q) = self.qmp(name).await {
                for i in 0..disks {
                    let _ = q
                        .call(
                            "blockdev-del",
                            serde_json::json!({"node-name": format!("mirror{i}")}),
                        )
                        .await;
                }
            }
        }
        let mut st = r?;
        (st.disk_transferred, st.disk_time) = disk_stats;
        Ok(st)
    }

    /// Migration target, afterwards: resume the instance, or drop it.
    pub(super) async fn finalize_dst(
        &self,
        inst: &InstanceRuntime,
        success: bool,
    ) -> NodeResult<()> {
        let _guard = self.lock.lock().await;
        if !success {
            return self.stop_locked(&inst.name, Duration::ZERO).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.qmp(&inst.name).await?.query_status().await?;
            if st.running {
                return Ok(());
            }
            if st.status == "paused" || st.status == "postmigrate" {
                let mut q = self.qmp(&inst.name).await?;
                // Local-disk migration: the disks were exported for the mirror.
                let _ = q.run("nbd-server-stop").await;
                q.cont().await?;
            }
            if Instant::now() > deadline {
                return Err(NodeError::timeout(format!(
                    "instance {} is {} after the migration",
                    inst.name, st.status
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Migration source, afterwards: stop the old copy, or resume it.
    pub(super) async fn finalize_src(&self, name: &str, success: bool) -> NodeResult<()> {
        let _guard = self.lock.lock().await;
        if success {
            return self.stop_locked(name, Duration::ZERO).await;
        }
        if self.running(name)?.is_some() {
            let mut q = self.qmp(name).await?;
            let _ = q.migrate_cancel().await;
            drop(q);
            // Disk mirrors a stopped master left running (the daemon that drove them
            // restarted): cancelled, so that the next move can mirror again.
            self.cancel_mirrors(name).await;
            let mut q = self.qmp(name).await?;
            if !q.query_status().await?.running {
                q.cont().await?;
            }
        }
        Ok(())
    }
}
