fn main() {
    let p = std::env::args().nth(1).expect("file");
    let g: Option<String> = std::env::args().nth(2);
    let d = std::fs::read_to_string(p).expect("read");
    let c = maguey_placement::text::load_text(&d, &Default::default()).expect("load");
    let gi = g.map(|g| c.group_by_name(&g).expect("group"));
    let s = maguey_placement::score::score_nodes(c.nodes.iter().filter(|n| gi.is_none_or(|g| n.group == g)));
    println!("{:.8} {:?}", s.total, s);
}
