//! `cargo loopcheck probe ADDR`: connect and explain, the telnet of this tool.

use std::net::{SocketAddr, ToSocketAddrs};

use loopcheck::report::Severity;

use crate::Exit;
use crate::cli::{Common, ProbeArgs};
use crate::error::{Error, Result};
use crate::report;
use crate::term::{Format, Term};

/// The addresses `text` stands for, in the order a client tries them.
fn resolve(text: &str) -> Result<Vec<SocketAddr>> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(Error::Usage(format!(
                "cannot probe `{text}`: port 0 is no address to connect to"
            )));
        }
        return Ok(vec![addr]);
    }
    let usage = |why: String| {
        Error::Usage(format!(
            "cannot probe `{text}`: {why}; write HOST:PORT, such as `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`"
        ))
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(|| usage("no port".into()))?;
    match port.parse::<u16>() {
        Ok(0) => return Err(usage("port 0 is no address to connect to".into())),
        Ok(_) => {}
        Err(_) => return Err(usage(format!("`{port}` is not a port"))),
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| usage(format!("`{host}` does not resolve ({e})")))?
        .collect();
    if addrs.is_empty() {
        return Err(usage(format!("`{host}` resolves to no address")));
    }
    Ok(addrs)
}

/// Runs `probe`. Exit code 0 when something answered, 1 otherwise.
pub fn run(common: &Common, args: &ProbeArgs, term: &Term) -> Result<u8> {
    let format = common
        .format
        .expect_one_of("probe", &[Format::Human, Format::Json])?;
    let addrs = resolve(&args.addr)?;
    // Like a client, try each address in turn and report the first that answers.
    let mut diagnoses = addrs.iter().map(|&addr| loopcheck::probe(addr, args.timeout));
    let first = diagnoses.next().expect("resolve returns at least one address");
    let mut diagnosis = if first.severity == Severity::Info {
        first
    } else {
        diagnoses.find(|d| d.severity == Severity::Info).unwrap_or(first)
    };
    if addrs.len() > 1 {
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        diagnosis.evidence.push(format!(
            "`{}` resolves to {}, tried in that order",
            args.addr,
            list.join(", ")
        ));
    }
    report::emit(&diagnosis, format, term)?;
    Ok(if diagnosis.severity == Severity::Info {
        Exit::OK
    } else {
        Exit::FOUND
    })
}
