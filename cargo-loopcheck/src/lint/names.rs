//! The names the rules read as ports and as listening calls, shared by the walk, the facts and
//! the config-file scan.

/// `port`, `with_port`, `set_port`, `http_port`; not `pick_unused_port` and its kin.
pub(crate) fn is_port_name(name: &str) -> bool {
    name == "port"
        || (name.ends_with("_port")
            && !["free", "unused", "open", "local", "pick"]
                .iter()
                .any(|w| name.contains(w)))
}

/// Calls whose first argument is an address to listen on.
pub(crate) fn is_bind_name(name: &str) -> bool {
    matches!(
        name,
        "bind" | "try_bind" | "bind_addr" | "listen" | "serve" | "run"
    )
}
