//! One module per opcode (or per pair of opcodes sharing their phases), named after the
//! opcode's noun and verb. A unit resolves, locks (through [`crate::locks`]), checks and
//! executes; what units share lives in the library modules beside this one (`lifecycle`,
//! `disks`, `migration`, `drbd`, `iallocator`, `moves`, `util`). No unit imports another.

pub(crate) mod cluster_destroy;
pub(crate) mod cluster_renew_crypto;
pub(crate) mod cluster_set_params;
pub(crate) mod cluster_verify;
pub(crate) mod cluster_verify_disks;
pub(crate) mod group;
pub(crate) mod group_assign_nodes;
pub(crate) mod group_evacuate;
pub(crate) mod instance_activate_disks;
pub(crate) mod instance_create;
pub(crate) mod instance_failover;
pub(crate) mod instance_grow_disk;
pub(crate) mod instance_migrate;
pub(crate) mod instance_move;
pub(crate) mod instance_query_data;
pub(crate) mod instance_recreate_disks;
pub(crate) mod instance_reinstall;
pub(crate) mod instance_remove;
pub(crate) mod instance_replace_disks;
pub(crate) mod instance_set_params;
pub(crate) mod instance_state;
pub(crate) mod master_ip;
pub(crate) mod network;
pub(crate) mod network_connect;
pub(crate) mod node_add;
pub(crate) mod node_evacuate;
pub(crate) mod node_remove;
pub(crate) mod node_set_params;
pub(crate) mod room_evacuate;
pub(crate) mod room_failover;
pub mod tags;
pub(crate) mod test_delay;
