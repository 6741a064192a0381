//! The gRPC contract between the control plane and gateway replicas, generated from
//! `proto/apig/v1/discovery.proto`. See that file for the protocol.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("apig.v1");
}

pub use v1::*;
