//! Rooms as hard failure domains (Maguey's `maguey:hard-location` cluster tag over htools'
//! location tags `htools:nlocation:room` / `room:NAME`): allocation never puts a DRBD pair
//! inside one room while another room has capacity, and the balancer never makes such a
//! pair. The clusters are generated as htools text files, so the room tags are read back
//! from that format too.

use maguey_placement::alloc::{self, AllocOptions};
use maguey_placement::balance::{balance, BalanceOptions};
use maguey_placement::model::{Cluster, Instance, TAG_HARD_LOCATION};
use maguey_placement::text::{load_text, write_text};
use maguey_placement::types::{DiskTemplate, InstanceStatus};
use maguey_placement::LoadOptions;

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const GROUP: &str = "g-uuid-1";

/// An htools text cluster: `n_rooms` rooms of uneven sizes and capacities (the first room
/// is the biggest, so a soft score alone would often pair inside it).
fn gen_cluster(rng: &mut Rng, n_rooms: usize, hard: bool) -> String {
    let mut s = format!("default|{GROUP}|preferred||\n\n");
    let mut k = 0;
    for r in 0..n_rooms {
        let count = if r == 0 {
            4 + rng.below(5)
        } else {
            1 + rng.below(3)
        };
        for _ in 0..count {
            k += 1;
            let mem = [65536, 131072, 262144][rng.below(3) as usize];
            let disk = [1_048_576, 2_097_152, 4_194_304][rng.below(3) as usize];
            let role = if k == 1 { "M" } else { "N" };
            s += &format!(
                "node{k}|{mem}|2048|{}|{disk}|{disk}|32|{role}|{GROUP}|1|room:room-{r}|N|1|1|1.0\n",
                mem - 2048
            );
        }
    }
    s += "\n\n";
    s += "htools:nlocation:room\n";
    if hard {
        s += &format!("{TAG_HARD_LOCATION}\n");
    }
    s
}

fn room(c: &Cluster, n: usize) -> &str {
    c.nodes[n]
        .tags
        .iter()
        .find_map(|t| t.strip_prefix("room:"))
        .unwrap_or("")
}

fn drbd(name: &str, rng: &mut Rng) -> Instance {
    let mem = 512 * (1 + rng.below(8) as i64);
    let dsk = 1024 * (1 + rng.below(20) as i64);
    Instance::new(
        name,
        mem,
        dsk,
        vec![maguey_placement::model::Disk {
            size: dsk,
            spindles: None,
        }],
        1 + rng.below(4) as i64,
        InstanceStatus::Running,
        vec![],
        true,
        DiskTemplate::Drbd,
        1,
        false,
    )
}

/// Allocates `count` random DRBD instances; returns how many landed and how many of
/// those share a room with their secondary.
fn allocate_many(c: &mut Cluster, rng: &mut Rng, count: usize, prefix: &str) -> (usize, usize) {
    let (mut placed, mut same) = (0, 0);
    for k in 0..count {
        let inst = drbd(&format!("{prefix}-{k}"), rng);
        let Ok(r) = alloc::allocate(c, &inst, 2, &AllocOptions::default()) else {
            continue;
        };
        let Some(idx) = alloc::commit_alloc(c, &inst, &r.solution) else {
            continue;
        };
        placed += 1;
        let i = &c.instances[idx];
        let s = i.snode.expect("a drbd instance has a secondary");
        if room(c, i.pnode) == room(c, s) {
            same += 1;
        }
    }
    (placed, same)
}

#[test]
fn thousand_allocations_never_pair_inside_a_room() {
    let mut rng = Rng(0x5eed_2026);
    let (mut placed, mut soft_same) = (0, 0);
    for round in 0..20 {
        let rooms = 2 + (round % 2);
        let text = gen_cluster(&mut rng, rooms, true);
        let mut c = load_text(&text, &LoadOptions::default()).expect("load");
        assert!(c.nodes.iter().all(|n| !n.location_tags.is_empty()));
        let (p, same) = allocate_many(&mut c, &mut rng, 50, &format!("r{round}"));
        assert_eq!(same, 0, "round {round}: a pair inside one room\n{text}");
        placed += p;
        // The same cluster and requests without the hard constraint: htools' location
        // score alone does pair inside a room sometimes (so this test can tell).
        let soft = text.replace(&format!("{TAG_HARD_LOCATION}\n"), "");
        let mut c2 = load_text(&soft, &LoadOptions::default()).expect("load");
        let mut rng2 = Rng(0x5eed_2026 + round as u64);
        soft_same += allocate_many(&mut c2, &mut rng2, 50, "soft").1;
    }
    // 1000 attempts; the clusters are big enough for almost all of them.
    assert!(placed >= 900, "only {placed} of 1000 allocations succeeded");
    assert!(
        soft_same > 0,
        "the soft score alone never paired inside a room"
    );
}

#[test]
fn one_room_full_falls_back_to_nothing_across() {
    // Room 1 has no memory left: with the hard constraint no pair fits.
    let text = format!(
        "default|{GROUP}|preferred||\n\n\
         a1|65536|2048|60000|1048576|1048576|32|M|{GROUP}|1|room:a|N|1|1|1.0\n\
         a2|65536|2048|60000|1048576|1048576|32|N|{GROUP}|1|room:a|N|1|1|1.0\n\
         b1|4096|2048|0|10|0|32|N|{GROUP}|1|room:b|N|1|1|1.0\n\n\n\
         htools:nlocation:room\n{TAG_HARD_LOCATION}\n"
    );
    let c = load_text(&text, &LoadOptions::default()).expect("load");
    let mut rng = Rng(7);
    let inst = drbd("x", &mut rng);
    let r = alloc::allocate(&c, &inst, 2, &AllocOptions::default());
    assert!(r.map(|g| g.solution.best.is_none()).unwrap_or(true));
    // Without the hard tag the allocator pairs a1/a2.
    let soft = text.replace(&format!("{TAG_HARD_LOCATION}\n"), "");
    let c = load_text(&soft, &LoadOptions::default()).expect("load");
    let r = alloc::allocate(&c, &inst, 2, &AllocOptions::default()).expect("alloc");
    let (_, p, s, _) = r.solution.best.expect("a solution");
    assert_eq!(room(&c, p), room(&c, s.expect("secondary")));
}

#[test]
fn the_balancer_never_pairs_inside_a_room() {
    let mut rng = Rng(0x0ba1_a2ce);
    let mut moves = 0;
    for round in 0..10 {
        let text = gen_cluster(&mut rng, 2, true);
        let mut c = load_text(&text, &LoadOptions::default()).expect("load");
        allocate_many(&mut c, &mut rng, 40, &format!("b{round}"));
        // Unbalance it: write it out and read it back (the room tags survive htools'
        // text format), with one node's instances piled up by a fresh allocation spree.
        let text2 = write_text(&c);
        assert!(text2.contains("room:room-0") && text2.contains("htools:nlocation:room"));
        let mut c = load_text(&text2, &LoadOptions::default()).expect("reload");
        allocate_many(&mut c, &mut rng, 10, &format!("b{round}x"));
        let r = balance(
            &c,
            &BalanceOptions {
                max_moves: Some(50),
                ..Default::default()
            },
        );
        for m in &r.moves {
            if let Some(s) = m.new_s {
                assert_ne!(
                    room(&c, m.new_p),
                    room(&c, s),
                    "round {round}: move {:?} pairs inside a room",
                    m.mv
                );
            }
        }
        for i in r.cluster.instances.iter() {
            if let Some(s) = i.snode {
                assert_ne!(room(&r.cluster, i.pnode), room(&r.cluster, s), "{}", i.name);
            }
        }
        moves += r.moves.len();
    }
    assert!(
        moves > 0,
        "the balancer never moved anything: the test proves nothing"
    );
}
