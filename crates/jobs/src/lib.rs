//! Job queue (being written).
