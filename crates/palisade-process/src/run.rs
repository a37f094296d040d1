//! One call of a `ProcessService`: spawn, feed stdin, read capped output, wait, kill.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::command::{has_nul, valid_env_key, CommandConfig, Program};
use crate::config::OutputLimitAction;
use crate::error::{ProcessError, ProcessErrorKind};
use crate::group::ChildGuard;
use crate::output::{KillReason, ProcessOutput, Termination};
use crate::request::ProcessRequest;
use crate::service::Shared;

/// Output read so far from one pipe, never more than `limit` bytes.
struct Captured {
    data: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Captured {
    fn new(limit: usize) -> Self {
        Self { data: Vec::new(), limit, truncated: false }
    }
}

/// The cap was hit and the service kills on it.
struct CapHit;

/// Reads `pipe` to its end into `buf`, keeping at most `buf.limit` bytes. With `kill_on_cap`
/// it stops at the first byte over the cap. Read errors end the stream.
async fn read_capped<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    buf: &mut Captured,
    kill_on_cap: bool,
) -> Result<(), CapHit> {
    let Some(mut pipe) = pipe else { return Ok(()) };
    let mut chunk = [0u8; 8 * 1024];
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => n,
        };
        let room = buf.limit - buf.data.len();
        let keep = n.min(room);
        let needed = buf.data.len() + keep;
        if needed > buf.data.capacity() {
            // Grow by doubling, but never past the cap.
            let target = (buf.data.capacity() * 2).max(needed).min(buf.limit);
            buf.data.reserve_exact(target - buf.data.len());
        }
        buf.data.extend_from_slice(&chunk[..keep]);
        if keep < n {
            buf.truncated = true;
            if kill_on_cap {
                return Err(CapHit);
            }
        }
    }
}

pub(crate) fn command(
    settings: &CommandConfig,
    program: &Program,
    req: &ProcessRequest,
) -> Result<Command, ProcessError> {
    let invalid = |detail| ProcessError::new(ProcessErrorKind::InvalidRequest, &program.name, detail);
    if req.args.iter().any(|a| has_nul(a)) {
        return Err(invalid("argument contains NUL"));
    }
    for (k, v) in &req.env {
        if !valid_env_key(k) {
            return Err(invalid("environment name is empty or contains `=` or NUL"));
        }
        if has_nul(v) {
            return Err(invalid("environment value contains NUL"));
        }
    }
    let mut cmd = Command::new(&program.path);
    cmd.args(&settings.args).args(&req.args);
    if !settings.inherit_env {
        cmd.env_clear();
        for key in &settings.env_allow {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
    }
    cmd.envs(settings.env.iter().map(|(k, v)| (k, v)));
    cmd.envs(req.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &settings.current_dir {
        cmd.current_dir(dir);
    }
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    Ok(cmd)
}

/// How the wait for the child ended.
enum Stop {
    Done(Termination),
    Kill(KillReason),
}

async fn deadline(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep_until(palisade_core::time::deadline_from_now(t)).await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    req: ProcessRequest,
    permit: OwnedSemaphorePermit,
) -> Result<ProcessOutput, ProcessError> {
    let settings = &shared.config;
    let mut cmd = command(&settings.command, &shared.program, &req)?;
    cmd.stdin(if req.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            shared.telemetry.spawn_failed(&err);
            return Err(ProcessError::spawn(&shared.program.name, err));
        }
    };
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut guard = ChildGuard::new(child, started, shared.telemetry.clone());
    let pid = guard.pid();

    let kill_on_cap = settings.on_output_limit == OutputLimitAction::Kill;
    let mut out = Captured::new(settings.max_stdout);
    let mut err = Captured::new(settings.max_stderr);
    let input = req.stdin;

    let stop = {
        let feed = async move {
            if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
                // A child that exits without reading its stdin is not an error (EPIPE).
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            }
        };
        let io = async {
            let ((), o, e) = tokio::join!(
                feed,
                read_capped(stdout, &mut out, kill_on_cap),
                read_capped(stderr, &mut err, kill_on_cap)
            );
            o.and(e)
        };
        tokio::pin!(io);
        let timer = deadline(settings.timeout);
        tokio::pin!(timer);
        let mut io_done = false;
        let mut exited: Option<Termination> = None;
        loop {
            if io_done {
                if let Some(t) = exited {
                    break Stop::Done(t);
                }
            }
            let Some(child) = guard.child_mut() else {
                break Stop::Kill(KillReason::Cancelled);
            };
            tokio::select! {
                r = &mut io, if !io_done => match r {
                    Ok(()) => io_done = true,
                    Err(CapHit) => break Stop::Kill(KillReason::OutputLimit),
                },
                status = child.wait(), if exited.is_none() => {
                    let termination = match status {
                        Ok(status) => Termination::from_status(status),
                        Err(_) => Termination::Exited(-1),
                    };
                    exited = Some(termination);
                    // The leader is gone: end background grandchildren that could hold the
                    // pipes open, so the output ends now rather than at the timeout.
                    if settings.kill_stragglers {
                        crate::group::kill_group(pid);
                    }
                },
                () = &mut timer => break Stop::Kill(KillReason::Timeout),
            }
        }
    };

    let termination = match stop {
        Stop::Done(termination) => {
            guard.finish(termination, None);
            termination
        }
        Stop::Kill(reason) => guard.kill(reason, None).await,
    };
    drop(permit);
    Ok(ProcessOutput {
        termination,
        stdout: out.data,
        stderr: err.data,
        stdout_truncated: out.truncated,
        stderr_truncated: err.truncated,
        duration: started.elapsed(),
        pid,
    })
}
