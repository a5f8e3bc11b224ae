//! Sinks: tasks that take rows from their durable queue and deliver them.
//! Each delivery ends in one of three ways: delivered (the row leaves the
//! queue), retry later (it stays), or rejected (set aside, counted).

pub mod influx;
pub mod uplink;
