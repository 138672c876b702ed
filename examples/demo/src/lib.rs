//! A line-echo server: the code under test of the demo workspace.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// Answers each line of each connection with the same line, until the listener fails.
pub fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let Ok(reader) = stream.try_clone() else { continue };
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if writeln!(stream, "{line}").is_err() {
                break;
            }
        }
    }
}
