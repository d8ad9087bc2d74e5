//! `launcher probe`: the health check of a container. A `FROM scratch` image has no
//! shell and no curl, so the launcher, built static like the services, ships in the
//! image (`deploy/Containerfile`) and its `HEALTHCHECK` runs this: `GET /health` on the
//! service, judged by [`Kind::healthy`] as `./run.sh` judges a start.
//!
//! Which service: a container's first process is its service, so PID 1's command
//! line names the binary (the kind) and `--listen` (the port); one image then serves
//! every service with one health check. `launcher probe KIND PORT` names them instead
//! (outside a container, or where PID 1 is an init process).

use common::topology::Kind;

use crate::error::LaunchError;
use crate::health;

/// The kinds a container can run, by their binaries' names.
const KINDS: [Kind; 3] = [Kind::Catalog, Kind::Order, Kind::Frontend];

/// Succeeds when the service answers `GET /health` on 127.0.0.1 and is healthy:
/// the one named, or else the one this container runs.
pub fn probe(kind: Option<&str>, port: Option<u16>) -> Result<(), LaunchError> {
    let (kind, port) = match (kind, port) {
        (Some(kind), Some(port)) => (kind_named(kind)?, port),
        (None, None) => {
            let cmdline =
                std::fs::read("/proc/1/cmdline").map_err(LaunchError::file("/proc/1/cmdline"))?;
            container_service(&cmdline)?
        }
        _ => return Err(target_error("give both KIND and PORT, or neither")),
    };
    match health::get_health("127.0.0.1", port) {
        Some(body) if kind.healthy(&body) => Ok(()),
        Some(body) => Err(LaunchError::Unhealthy {
            kind: kind.binary(),
            port,
            reply: body,
        }),
        None => Err(LaunchError::Unhealthy {
            kind: kind.binary(),
            port,
            reply: "no answer".into(),
        }),
    }
}

/// The kind whose binary is called `name` (a path's file name).
fn kind_named(name: &str) -> Result<Kind, LaunchError> {
    let file = name.rsplit('/').next().unwrap_or(name);
    KINDS
        .into_iter()
        .find(|k| k.binary() == file)
        .ok_or_else(|| target_error(&format!("'{name}' is not catalog, order or frontend")))
}

/// The kind and port of the service whose command line (NUL-separated, as in
/// `/proc/PID/cmdline`) is `cmdline`: its binary and its `--listen` address.
fn container_service(cmdline: &[u8]) -> Result<(Kind, u16), LaunchError> {
    let text = String::from_utf8_lossy(cmdline);
    let mut args = text.split('\0').filter(|a| !a.is_empty());
    let kind = kind_named(args.next().unwrap_or_default())?;
    let mut listen = None;
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--listen=") {
            listen = Some(value.to_string());
        } else if arg == "--listen" {
            listen = args.next().map(str::to_string);
        }
    }
    let listen = listen.ok_or_else(|| target_error("the service has no --listen flag"))?;
    let port = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| target_error(&format!("no port in --listen '{listen}'")))?;
    Ok((kind, port))
}

fn target_error(why: &str) -> LaunchError {
    LaunchError::ProbeTarget(why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_read_from_its_command_line() {
        let line = b"/bin/order\0--id\x002\0--listen\x000.0.0.0:8092\0--data-dir\0/data\0";
        assert_eq!(container_service(line).ok(), Some((Kind::Order, 8092)));
        let line = b"frontend\0--listen=[::]:8080\0";
        assert_eq!(container_service(line).ok(), Some((Kind::Frontend, 8080)));
    }

    #[test]
    fn a_command_line_without_a_service_or_a_port_is_refused() {
        for line in [
            &b"/sbin/init\0--listen\x000.0.0.0:1\0"[..],
            b"/bin/catalog\0--data-dir\0/data\0",
            b"/bin/catalog\0--listen\0",
            b"/bin/catalog\0--listen\0host:port\0",
            b"",
        ] {
            assert!(
                matches!(container_service(line), Err(LaunchError::ProbeTarget(_))),
                "{line:?}"
            );
        }
    }
}
