//! The API node: owns the database and serves Fn's management API (v1 and v2) and the hybrid API that
//! runner nodes use. In full mode it also mounts the invoke paths over an in-process agent.

pub mod datastore;
