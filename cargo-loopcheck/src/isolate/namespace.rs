//! Entering a private network namespace: `unshare(CLONE_NEWNET)` as root, else inside a new
//! user namespace that maps this user to itself, so that files keep their owners.

use std::fmt;

/// How the namespace was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(target_os = "linux"),
    expect(dead_code, reason = "only Linux has network namespaces to enter")
)]
pub(crate) enum Entered {
    /// With this process's own `CAP_SYS_ADMIN` (root, or a capable container).
    Network,
    /// Through a user namespace of its own, as an unprivileged user.
    UserAndNetwork,
}

impl fmt::Display for Entered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entered::Network => "as root (or with CAP_SYS_ADMIN)",
            Entered::UserAndNetwork => "in a user namespace of its own (unprivileged)",
        })
    }
}

pub(crate) use crate::error::Unavailable;

/// Moves this process into a new network namespace (and a user namespace when it lacks the
/// privilege for a network namespace alone). Must run while the process has one thread: the
/// kernel refuses `CLONE_NEWUSER` otherwise.
#[cfg(target_os = "linux")]
pub(crate) fn enter() -> Result<Entered, Unavailable> {
    // SAFETY: unshare takes flags only; it changes this process's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return Ok(Entered::Network);
    }
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // SAFETY: as above.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(refused(std::io::Error::last_os_error()));
    }
    // The user stays who it is inside (uid and gid mapped to themselves); `setgroups` must
    // be denied before an unprivileged process may write its gid map.
    let maps = [
        ("/proc/self/setgroups", "deny".to_owned()),
        ("/proc/self/uid_map", format!("{uid} {uid} 1")),
        ("/proc/self/gid_map", format!("{gid} {gid} 1")),
    ];
    for (path, map) in maps {
        if let Err(err) = std::fs::write(path, map)
            && !(path.ends_with("setgroups") && err.kind() == std::io::ErrorKind::NotFound)
        {
            return Err(Unavailable::new(
                format!(
                    "a user namespace was created but `{path}` cannot be written ({err}), as where AppArmor restricts unprivileged user namespaces"
                ),
                RESTRICTED_FIX,
            ));
        }
    }
    Ok(Entered::UserAndNetwork)
}

/// Off Linux there are no network namespaces.
#[cfg(not(target_os = "linux"))]
pub(crate) fn enter() -> Result<Entered, Unavailable> {
    Err(Unavailable::new(
        format!(
            "network namespaces exist only on Linux, not on {}",
            std::env::consts::OS
        ),
        "run the suite on Linux (a CI runner, a container, a VM) for --isolate, or run it without --isolate",
    ))
}

#[cfg(target_os = "linux")]
const RESTRICTED_FIX: &str = "allow unprivileged user namespaces (`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` on Ubuntu, or an AppArmor profile for cargo-loopcheck), or run the tests as root";

/// Why `unshare(CLONE_NEWUSER | CLONE_NEWNET)` failed, in the words of the setting behind it.
#[cfg(target_os = "linux")]
fn refused(err: std::io::Error) -> Unavailable {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{name}"))
            .ok()
            .map(|v| v.trim().to_owned())
    };
    match err.raw_os_error() {
        Some(libc::ENOSPC) if sysctl("user/max_user_namespaces").as_deref() == Some("0") => Unavailable::new(
            "user namespaces are disabled (user.max_user_namespaces = 0)",
            "enable them with `sysctl -w user.max_user_namespaces=15000`, or run the tests as root",
        ),
        Some(libc::ENOSPC) => Unavailable::new(
            format!("no more user namespaces may be created ({err})"),
            "raise `user.max_user_namespaces` with sysctl, or run the tests as root",
        ),
        Some(libc::EINVAL) => Unavailable::new(
            format!(
                "the kernel refused a new namespace ({err}): it may lack CONFIG_USER_NS or CONFIG_NET_NS"
            ),
            "use a kernel built with user and network namespaces, or run without --isolate",
        ),
        _ if sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0") => Unavailable::new(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            "enable them with `sysctl -w kernel.unprivileged_userns_clone=1`, or run the tests as root",
        ),
        _ if sysctl("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") => {
            Unavailable::new(
                "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)",
                RESTRICTED_FIX,
            )
        }
        _ => Unavailable::new(
            format!(
                "this process may create neither a network namespace nor a user namespace ({err}), as in a container without CAP_SYS_ADMIN whose seccomp profile blocks unshare"
            ),
            "give the container the capability (`docker run --cap-add SYS_ADMIN`, or `--security-opt seccomp=unconfined`), or run the tests where unprivileged user namespaces are allowed",
        ),
    }
}
