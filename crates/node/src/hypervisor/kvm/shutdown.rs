//! Host shutdown (`magueyd --shutdown-guests`, run by `maguey-guests.service` when systemd
//! stops it): every running guest gets an ACPI power-down at once, the host waits up to a
//! timeout for all of them, then stops the rest hard. The instances' admin state stays up, so
//! after boot the master's watcher starts them again; the names are recorded in
//! `run/kvm/host-shutdown.json` for the operator.

use super::KvmHypervisor;
use crate::error::{NodeError, NodeResult};
use std::time::Duration;

/// The record of the last host shutdown, in the kvm run directory.
pub const RECORD_FILE: &str = "host-shutdown.json";

/// What happened to one guest at host shutdown.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoweredDown {
    pub name: String,
    /// Whether the guest powered off by itself (ACPI) before the timeout.
    pub clean: bool,
}

impl KvmHypervisor {
    /// ACPI power-down of every running instance, in parallel; after `timeout`, QMP `quit`
    /// then SIGKILL for those still running. Returns what happened to each (also recorded).
    pub async fn power_down_all(&self, timeout: Duration) -> NodeResult<Vec<PoweredDown>> {
        let _guard = self.lock.lock().await;
        let mut running = Vec::new();
        for name in self.all_names()? {
            if let Some(rf) = self.running(&name)? {
                running.push(rf);
            }
        }
        for rf in &running {
            tracing::info!("host shutdown: ACPI power-down of instance {}", rf.name);
            if let Ok(mut q) = self.qmp(&rf.name).await {
                let _ = q.system_powerdown().await;
            }
        }
        // One deadline for all: they were all asked at once.
        let deadline = std::time::Instant::now() + timeout;
        let mut done = Vec::new();
        for rf in &running {
            let qmp = self.paths(&rf.name)?.qmp.to_string_lossy().into_owned();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let clean = self.wait_off(rf, &qmp, left).await;
            if !clean {
                tracing::warn!(
                    "host shutdown: instance {} did not power off in {timeout:?}; stopping it hard",
                    rf.name
                );
            }
            self.stop_locked(&rf.name, Duration::ZERO).await?;
            done.push(PoweredDown {
                name: rf.name.clone(),
                clean,
            });
        }
        let record = self.run_dir.join(RECORD_FILE);
        let data = serde_json::to_vec_pretty(&serde_json::json!({
            "time": maguey_model::now(),
            "instances": done,
        }))
        .map_err(|e| NodeError::internal(e.to_string()))?;
        crate::write_atomic(&record, &data)?;
        Ok(done)
    }
}
