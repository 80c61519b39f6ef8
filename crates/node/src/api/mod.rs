//! The node's API: every [`NodeRequest`] mapped to the function that executes it, each
//! returning its typed reply ([`NodeReply`]) or a [`NodeError`]. Grouped by subject:
//!
//! * [`node`]: the node itself and its cluster files (version, node info, ssconf, volumes,
//!   test delay, leaving the cluster);
//! * [`blockdev`]: block devices (create, remove, find, list, grow, read/write chunks);
//! * [`instance`]: instances on the hypervisor (start, stop, reboot, info, balloon, console,
//!   disk resize) and their live migration;
//! * [`drbd`]: the DRBD steps of mirrored disks;
//! * [`os`]: OS definitions and the built-in image provider;
//! * [`certs`]: renewing the node's certificate.
//!
//! Instance networking (taps, bridges, routes) has no request of its own: it is part of
//! starting and stopping instances ([`crate::network`]).
//!
//! [`NodeRuntime::handle`] is the one place that turns these results into the JSON of the
//! wire.

pub mod blockdev;
pub mod certs;
pub mod drbd;
pub mod instance;
pub mod node;
pub mod os;

use crate::error::NodeResult;
use crate::NodeRuntime;
use maguey_rpc::{NodeReply, NodeRequest};

/// Executes one request (Firecracker's `handle_action`): the typed reply or why it failed.
pub async fn dispatch(rt: &NodeRuntime, req: NodeRequest) -> NodeResult<NodeReply> {
    use NodeRequest as R;
    match req {
        // The node and its cluster files.
        R::Version => Ok(NodeReply::Version(node::version(rt))),
        R::NodeInfo {
            file_storage_dir,
            hypervisor,
        } => node::node_info(rt, &file_storage_dir, &hypervisor)
            .await
            .map(NodeReply::NodeInfo),
        R::WriteSsconf { ssconf } => node::write_ssconf(rt, &ssconf).await.map(empty),
        R::NodeVolumes => node::volumes(rt).await.map(NodeReply::Names),
        R::TestDelay { duration } => node::test_delay(duration).await.map(empty),
        R::HooksRunner { hpath, phase, env } => crate::hooks::run(rt, &hpath, phase, &env)
            .await
            .map(NodeReply::Hooks),
        R::LeaveCluster => node::leave_cluster(rt).map(empty),
        R::ActivateMasterIp { master_ip } => NodeRuntime::blocking(move || {
            crate::master_ip::activate(crate::exec::system().as_ref(), &master_ip)
        })
        .await
        .map(empty),
        R::DeactivateMasterIp { master_ip } => NodeRuntime::blocking(move || {
            crate::master_ip::deactivate(crate::exec::system().as_ref(), &master_ip)
        })
        .await
        .map(empty),
        R::CertificatePrepare => certs::prepare(rt).await.map(NodeReply::Text),
        R::CertificateSign {
            csr,
            node_name,
            ips,
            next_ca,
            lifetime_secs,
        } => certs::sign(rt, csr, node_name, ips, next_ca, lifetime_secs)
            .await
            .map(NodeReply::Text),
        R::CertificateInstall {
            certificate,
            ssconf,
        } => certs::install(rt, certificate, ssconf)
            .await
            .map(NodeReply::Text),
        R::CaPrepare => certs::ca_prepare(rt).await.map(NodeReply::Text),
        R::CaTrust { ca } => certs::ca_step(rt, ca, false).await.map(empty),
        R::CaFinish { ca } => certs::ca_step(rt, ca, true).await.map(empty),
        R::AdminCertificateRenew => certs::renew_admin(rt).await.map(NodeReply::Text),
        R::RapiCertificateRenew { file, ips } => {
            certs::renew_rapi(rt, file, ips).await.map(NodeReply::Text)
        }
        // Block devices.
        R::BlockdevCreate {
            disk,
            instance_name,
            file_storage_dir,
        } => blockdev::create(rt, disk, &instance_name, &file_storage_dir)
            .await
            .map(NodeReply::Blockdev),
        R::BlockdevRemove {
            disk,
            file_storage_dir,
        } => blockdev::remove(rt, disk, &file_storage_dir)
            .await
            .map(empty),
        R::BlockdevFind {
            disk,
            file_storage_dir,
        } => blockdev::find(rt, disk, &file_storage_dir)
            .await
            .map(NodeReply::BlockdevFound),
        R::FileStorageList { file_storage_dir } => {
            blockdev::file_storage_list(rt, &file_storage_dir)
                .await
                .map(NodeReply::Names)
        }
        R::BlockdevRead {
            disk,
            file_storage_dir,
            offset,
            length,
        } => blockdev::read(rt, disk, &file_storage_dir, offset, length)
            .await
            .map(NodeReply::Chunk),
        R::BlockdevWrite {
            disk,
            file_storage_dir,
            offset,
            chunk,
        } => blockdev::write(rt, disk, &file_storage_dir, offset, chunk)
            .await
            .map(empty),
        R::BlockdevGrow {
            disk,
            file_storage_dir,
            amount,
            backingstore,
        } => blockdev::grow(rt, disk, &file_storage_dir, amount, backingstore)
            .await
            .map(empty),
        // Instances.
        R::InstanceStart { instance } => instance::start(rt, &instance).await.map(empty),
        R::InstanceShutdown {
            name,
            hypervisor,
            timeout,
        } => instance::shutdown(rt, &name, &hypervisor, timeout)
            .await
            .map(empty),
        R::InstanceReboot {
            instance,
            reboot_type,
            shutdown_timeout,
        } => instance::reboot(rt, &instance, &reboot_type, shutdown_timeout)
            .await
            .map(empty),
        R::InstanceList { hypervisor } => {
            instance::list(rt, &hypervisor).await.map(NodeReply::Names)
        }
        R::InstanceInfo { name, hypervisor } => instance::info(rt, &name, &hypervisor)
            .await
            .map(NodeReply::InstanceInfo),
        R::AllInstancesInfo { hypervisor } => instance::all_info(rt, &hypervisor)
            .await
            .map(NodeReply::AllInstancesInfo),
        R::InstanceBalloonMemory {
            name,
            hypervisor,
            memory,
        } => instance::balloon(rt, &name, &hypervisor, memory)
            .await
            .map(empty),
        R::InstanceConsole {
            name,
            hypervisor,
            max_bytes,
        } => instance::console(rt, &name, &hypervisor, max_bytes)
            .await
            .map(NodeReply::Text),
        R::InstanceResizeDisk {
            name,
            hypervisor,
            disk_index,
            size,
        } => instance::resize_disk(rt, &name, &hypervisor, disk_index, size)
            .await
            .map(empty),
        // Live migration.
        R::AcceptInstance {
            instance,
            address,
            port,
            nbd_port,
            tls_peer,
        } => instance::accept(rt, &instance, &address, port, nbd_port, tls_peer.as_deref())
            .await
            .map(NodeReply::AcceptedPorts),
        R::InstanceMigrate {
            name,
            hypervisor,
            target,
            port,
            bandwidth,
            downtime,
            nbd_port,
            tls_peer,
            caps,
        } => {
            let to = instance::MigrationTarget {
                target: &target,
                port,
                bandwidth,
                downtime,
                nbd_port,
                tls_peer: tls_peer.as_deref(),
                caps: &caps,
            };
            instance::migrate(rt, &name, &hypervisor, to)
                .await
                .map(NodeReply::Migration)
        }
        R::FinalizeMigrationDst { instance, success } => {
            instance::finalize_dst(rt, &instance, success)
                .await
                .map(empty)
        }
        R::FinalizeMigrationSrc {
            name,
            hypervisor,
            success,
        } => instance::finalize_src(rt, &name, &hypervisor, success)
            .await
            .map(empty),
        R::InstanceMigrationProgress { name, hypervisor } => {
            instance::migration_progress(rt, &name, &hypervisor)
                .await
                .map(NodeReply::MigrationProgress)
        }
        // DRBD.
        R::DrbdAssemble {
            disks,
            instance_name,
            role,
        } => drbd::assemble(rt, disks, instance_name, role)
            .await
            .map(empty),
        R::DrbdSetRole {
            disks,
            primary,
            force,
        } => drbd::set_role(rt, disks, primary, force).await.map(empty),
        R::DrbdPromoteConnected {
            disks,
            timeout_secs,
        } => drbd::promote_connected(rt, disks, timeout_secs)
            .await
            .map(empty),
        R::DrbdSetDualPrimary { disks, enable } => {
            drbd::set_dual_primary(rt, disks, enable).await.map(empty)
        }
        R::DrbdShutdown { disks } => drbd::shutdown(rt, disks).await.map(empty),
        R::DrbdReconnectDiscard {
            disks,
            instance_name,
        } => drbd::reconnect_discard(rt, disks, instance_name)
            .await
            .map(empty),
        R::DrbdReplaceStorage {
            disks,
            instance_name,
            suffix,
        } => drbd::replace_storage(rt, disks, &instance_name, suffix)
            .await
            .map(NodeReply::Names),
        R::DrbdDisconnect { disks } => drbd::disconnect(rt, disks).await.map(empty),
        R::DrbdSkipInitialSync { disks } => drbd::skip_initial_sync(rt, disks).await.map(empty),
        R::DrbdNodeCheck { usermode_helper } => drbd::node_check(rt, usermode_helper)
            .await
            .map(NodeReply::DrbdNodeCheck),
        R::DrbdStatus { disks } => drbd::status(rt, disks).await.map(NodeReply::DrbdStatus),
        R::DrbdSyncProgress { disks } => drbd::sync_progress(rt, disks)
            .await
            .map(NodeReply::DrbdSync),
        // OS definitions.
        R::OsValidate { install } => os::validate(rt, &install).await.map(NodeReply::Text),
        R::InstanceOsRename { install, old_name } => os::rename(rt, &install, &old_name)
            .await
            .map(NodeReply::Text),
        R::InstanceOsAdd { install, reinstall } => os::add(rt, &install, reinstall).await,
        R::OsDiagnose => os::diagnose(rt).await.map(NodeReply::OsList),
    }
}

/// The reply of requests that answer nothing.
fn empty(_: ()) -> NodeReply {
    NodeReply::Empty
}
