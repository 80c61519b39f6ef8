//! Node runtime (being written).
