//! The gRPC contract between the control plane and gateway replicas, generated from
//! `proto/apig/v1/discovery.proto` (see that file for the protocol), and the conventions of its
//! mutual TLS ([`cluster`]).

pub mod cluster;

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("apig.v1");
}

pub use v1::*;
