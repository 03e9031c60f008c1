//! Local store (being written).
