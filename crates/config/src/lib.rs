//! Config state machine (being written).
