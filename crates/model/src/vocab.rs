//! The cluster's typed vocabulary: every closed set of words (disk templates, hypervisors,
//! modes, policies) is an enum spelled on the wire exactly as Ganeti spells it.
//!
//! Each enum has `as_str`, `Display`, `FromStr` and serde forms that go through `FromStr`, so
//! a bad value is refused once, at deserialisation, with one message for every path (CLI,
//! RAPI, iallocator answers, child jobs, stored config): `unknown disk template 'floppy'
//! (known: diskless, file, sharedfile, plain, drbd)`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A word outside its vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{value}' (known: {})", known.join(", "))]
pub struct VocabError {
    /// What the word names, e.g. `disk template`.
    pub kind: &'static str,
    pub value: String,
    pub known: &'static [&'static str],
}

macro_rules! vocab {
    (
        $(#[$meta:meta])*
        $name:ident, $label:literal {
            $( $(#[$vmeta:meta])* $var:ident => $s:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $var ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// Every value's wire spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            /// What a value of this type names (used in error messages).
            pub const KIND: &'static str = $label;

            /// The wire spelling (Ganeti's).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = VocabError;
            fn from_str(s: &str) -> Result<Self, VocabError> {
                match s {
                    $($s $(| $alias)* => Ok($name::$var),)+
                    _ => Err(VocabError {
                        kind: $label,
                        value: s.to_string(),
                        known: $name::NAMES,
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

vocab! {
    /// How an instance's disks are stored (Ganeti's disk templates).
    #[derive(Default)]
    DiskTemplate, "disk template" {
        #[default]
        Diskless => "diskless",
        File => "file",
        Sharedfile => "sharedfile",
        Plain => "plain",
        Drbd => "drbd",
    }
}

impl DiskTemplate {
    /// Has disks at all (every template but `diskless`).
    pub fn has_disks(self) -> bool {
        self != DiskTemplate::Diskless
    }
    /// Mirrored by the cluster itself between a primary and a secondary node (DRBD).
    pub fn is_internally_mirrored(self) -> bool {
        self == DiskTemplate::Drbd
    }
    /// Reachable from every node without copying (shared storage).
    pub fn is_shared(self) -> bool {
        self == DiskTemplate::Sharedfile
    }
    /// Needs a secondary node (`drbd`).
    pub fn needs_secondary(self) -> bool {
        self.is_internally_mirrored()
    }
    /// How many nodes hold the disks (primary, and the secondary of a mirrored template).
    pub fn node_count(self) -> usize {
        if self.needs_secondary() {
            2
        } else {
            1
        }
    }
    /// The disks live on one node only, not replicated: moving the instance copies them
    /// (`file`, `plain`).
    pub fn has_local_disks(self) -> bool {
        matches!(self, DiskTemplate::File | DiskTemplate::Plain)
    }
    /// Every node sees the disks, or there are none (`diskless`, `sharedfile`): the instance
    /// can start anywhere without moving data.
    pub fn is_node_independent(self) -> bool {
        matches!(self, DiskTemplate::Diskless | DiskTemplate::Sharedfile)
    }
    /// Stored in LVM logical volumes (`plain`, and the children of `drbd`).
    pub fn uses_lvm(self) -> bool {
        matches!(self, DiskTemplate::Plain | DiskTemplate::Drbd)
    }
    /// Stored as image files (`file`, `sharedfile`).
    pub fn is_file_based(self) -> bool {
        matches!(self, DiskTemplate::File | DiskTemplate::Sharedfile)
    }
    /// A failover (stop, start elsewhere) keeps the data: every node sees the disks, or the
    /// other node holds a replica.
    pub fn can_failover(self) -> bool {
        self.is_node_independent() || self.is_internally_mirrored()
    }
    /// `instance move` can copy the disks to another node (not shared, not mirrored).
    pub fn can_move_by_copy(self) -> bool {
        !self.is_shared() && !self.is_internally_mirrored()
    }
    /// The storage type holding this template's disks (Ganeti's storage types: `lvm-vg` for
    /// LVM-based templates, else the template's own name).
    pub fn storage_type(self) -> &'static str {
        if self.uses_lvm() {
            "lvm-vg"
        } else {
            self.as_str()
        }
    }
    /// The device type of this template's disks (`None` for `diskless`).
    pub fn dev_type(self) -> Option<DevType> {
        match self {
            DiskTemplate::Diskless => None,
            DiskTemplate::File => Some(DevType::File),
            DiskTemplate::Sharedfile => Some(DevType::Sharedfile),
            DiskTemplate::Plain => Some(DevType::Plain),
            DiskTemplate::Drbd => Some(DevType::Drbd),
        }
    }
}

vocab! {
    /// The kind of one disk device (Ganeti's `dev_type`); the children of a `drbd` disk are
    /// `plain`.
    DevType, "device type" {
        File => "file",
        Sharedfile => "sharedfile",
        Plain => "plain",
        Drbd => "drbd",
    }
}

impl DevType {
    /// A block device on the node (an LV or a DRBD device), not a file.
    pub fn is_block_device(self) -> bool {
        matches!(self, DevType::Plain | DevType::Drbd)
    }
    /// The template whose disks have this device type.
    pub fn template(self) -> DiskTemplate {
        match self {
            DevType::File => DiskTemplate::File,
            DevType::Sharedfile => DiskTemplate::Sharedfile,
            DevType::Plain => DiskTemplate::Plain,
            DevType::Drbd => DiskTemplate::Drbd,
        }
    }
}

vocab! {
    /// Hypervisors Maguey knows.
    #[derive(Default)]
    Hypervisor, "hypervisor" {
        #[default]
        Fake => "fake",
        Kvm => "kvm",
    }
}

impl Hypervisor {
    /// The hypervisor named `s`, if known.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
    /// Same as [`Hypervisor::as_str`].
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}

vocab! {
    /// How a running instance moves (Ganeti's migration modes).
    #[derive(Default)]
    MigrationMode, "migration mode" {
        #[default]
        Live => "live",
        NonLive => "non-live",
    }
}

vocab! {
    /// How an instance reboots (Ganeti's reboot types).
    #[derive(Default)]
    RebootType, "reboot type" {
        #[default]
        Soft => "soft",
        Hard => "hard",
        Full => "full",
    }
}

vocab! {
    /// Which instances a node evacuation moves (Ganeti's evacuation modes).
    #[derive(Default)]
    EvacMode, "evacuation mode" {
        // Ganeti's short forms are accepted too.
        PrimaryOnly => "primary-only" | "pri" | "p",
        SecondaryOnly => "secondary-only" | "sec" | "s",
        #[default]
        All => "all",
    }
}

impl EvacMode {
    /// Moves the instances whose primary is the node.
    pub fn moves_primaries(self) -> bool {
        self != EvacMode::SecondaryOnly
    }
    /// Moves the secondaries that are on the node.
    pub fn moves_secondaries(self) -> bool {
        self != EvacMode::PrimaryOnly
    }
}

vocab! {
    /// How a NIC is connected (Ganeti's NIC modes).
    #[derive(Default)]
    NicMode, "NIC mode" {
        #[default]
        Bridged => "bridged",
        Routed => "routed",
        Openvswitch => "openvswitch",
    }
}

vocab! {
    /// What the admin wants an instance to be.
    #[derive(Default)]
    AdminState, "admin state" {
        Up => "up",
        #[default]
        Down => "down",
        Offline => "offline",
    }
}

vocab! {
    /// Who set an instance's admin state (Ganeti's `admin_state_source`): the admin, or the
    /// guest that powered itself off (`user`, recorded by the watcher with `user_shutdown`).
    #[derive(Default)]
    AdminStateSource, "admin state source" {
        #[default]
        Admin => "admin",
        User => "user",
    }
}

impl AdminStateSource {
    /// The default (not written in stored configs, which stay as they were).
    pub fn is_admin(&self) -> bool {
        *self == AdminStateSource::Admin
    }
}

vocab! {
    /// Whether the allocator places new instances in a node group (Ganeti's alloc policies).
    #[derive(Default)]
    AllocPolicy, "allocation policy" {
        #[default]
        Preferred => "preferred",
        LastResort => "last_resort",
        Unallocable => "unallocable",
    }
}

vocab! {
    /// How OP_INSTANCE_CREATE gets the instance's disks (Ganeti's creation modes).
    #[derive(Default)]
    InstanceCreateMode, "instance creation mode" {
        #[default]
        Create => "create",
        Import => "import",
        RemoteImport => "remote-import",
    }
}

vocab! {
    /// What OP_INSTANCE_REPLACE_DISKS replaces (Ganeti's replace modes).
    ReplaceDisksMode, "replace-disks mode" {
        OnPrimary => "replace_on_primary",
        OnSecondary => "replace_on_secondary",
        NewSecondary => "replace_new_secondary",
        Auto => "replace_auto",
    }
}

vocab! {
    /// Read-write or read-only (a disk's `mode`).
    #[derive(Default)]
    DiskMode, "disk mode" {
        #[default]
        ReadWrite => "rw",
        ReadOnly => "ro",
    }
}

vocab! {
    /// What a tag is attached to (Ganeti's tag kinds).
    TagKind, "tag kind" {
        Cluster => "cluster",
        Node => "node",
        Instance => "instance",
        NodeGroup => "nodegroup",
        Network => "network",
    }
}

impl TagKind {
    /// The kind named `s`, if known.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spellings_round_trip() {
        for t in DiskTemplate::ALL {
            let j = serde_json::to_string(t).unwrap();
            assert_eq!(j, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<DiskTemplate>(&j).unwrap(), *t);
            assert_eq!(t.to_string().parse::<DiskTemplate>().unwrap(), *t);
        }
        assert_eq!(MigrationMode::NonLive.as_str(), "non-live");
        assert_eq!(EvacMode::PrimaryOnly.as_str(), "primary-only");
        assert_eq!(AllocPolicy::LastResort.as_str(), "last_resort");
        assert_eq!("pri".parse::<EvacMode>().unwrap(), EvacMode::PrimaryOnly);
        assert_eq!("s".parse::<EvacMode>().unwrap().as_str(), "secondary-only");
        assert_eq!(
            ReplaceDisksMode::NewSecondary.as_str(),
            "replace_new_secondary"
        );
    }

    #[test]
    fn bad_values_name_the_allowed_ones() {
        let e = "floppy".parse::<DiskTemplate>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown disk template 'floppy' (known: diskless, file, sharedfile, plain, drbd)"
        );
        let e = serde_json::from_str::<RebootType>("\"sideways\"").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unknown reboot type 'sideways' (known: soft, hard, full)"),
            "{e}"
        );
        assert!(serde_json::from_str::<Hypervisor>("3").is_err());
    }

    #[test]
    fn template_properties() {
        use DiskTemplate::*;
        assert!(Drbd.is_internally_mirrored() && Drbd.needs_secondary() && Drbd.uses_lvm());
        assert!(!Drbd.has_local_disks() && !Drbd.can_move_by_copy());
        assert!(!Plain.needs_secondary() && Plain.uses_lvm() && Plain.has_local_disks());
        assert!(Diskless.can_move_by_copy() && File.can_move_by_copy());
        assert!(!Sharedfile.can_move_by_copy() && Diskless.is_node_independent());
        assert!(Sharedfile.is_shared() && Sharedfile.can_failover());
        assert!(!File.can_failover() && File.is_file_based());
        assert!(!Diskless.has_disks() && Diskless.dev_type().is_none());
        assert_eq!(Drbd.node_count(), 2);
        assert_eq!(File.node_count(), 1);
        for t in DiskTemplate::ALL.iter().filter(|t| t.has_disks()) {
            assert_eq!(t.dev_type().map(DevType::template), Some(*t));
        }
    }
}
