//! `apigctl`: signed management calls against an APIG-compatible control plane, and signed
//! calls to the APIs its gateways publish. See `apigctl --help`.

mod cli;
mod client;
mod commands;
mod config;
mod paths;
mod request;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("apigctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("apigctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
