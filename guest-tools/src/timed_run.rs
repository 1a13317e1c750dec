//! `timed-run`: starts a command (a VMM), relays its output with a label, and measures the time
//! from spawning it to the first result line its guest prints. The harness uses it to time
//! vgpu-vmm and QEMU the same way.

use crate::report::{Record, Relayed, Stream, TimedRun, RESULT_PREFIX};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long to wait for the output pipes to close after killing a command at its timeout.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct TimedRunSpec {
    /// Label for relayed lines and the result record.
    pub label: String,
    /// Kill the command after this long.
    pub timeout: Duration,
    /// Program and arguments.
    pub command: Vec<OsString>,
    /// Relay a line that has no newline yet once the command has been quiet this long (a
    /// login prompt waits for input without ending its line); `None` relays only whole lines
    /// (and what is left when a stream closes).
    pub partial_after: Option<Duration>,
    /// Texts whose first appearance on stdout is timed (matched as output arrives, so a
    /// prompt without its newline counts at once).
    pub marks: Vec<String>,
    /// Kill the command once every mark has been seen (a benchmark that has its times).
    pub stop_after_marks: bool,
}

/// Error starting the command.
#[derive(Debug, thiserror::Error)]
pub enum TimedRunError {
    /// No command given.
    #[error("no command given")]
    NoCommand,
    /// The label has characters that relayed lines cannot carry.
    #[error("bad label {0:?}: use 1-32 characters of A-Z a-z 0-9 _ . -")]
    BadLabel(String),
    /// The command could not be started.
    #[error("spawning {program:?}: {error}")]
    Spawn {
        /// Program that failed to start.
        program: OsString,
        /// Underlying error.
        error: std::io::Error,
    },
}

enum Event {
    Chunk(Stream, Vec<u8>, Instant),
    Closed(Stream),
}

/// Output of one stream not relayed yet: the bytes after its last newline, and since when.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    since: Option<Instant>,
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Runs the command, relaying its output to stdout as it comes, and returns the timing record
/// (which the caller prints).
pub fn run(spec: &TimedRunSpec) -> Result<TimedRun, TimedRunError> {
    run_to(spec, &mut std::io::stdout())
}

/// As [`run`], relaying to `out`.
pub fn run_to(spec: &TimedRunSpec, out: &mut dyn Write) -> Result<TimedRun, TimedRunError> {
    if !crate::report::is_label(&spec.label) {
        return Err(TimedRunError::BadLabel(spec.label.clone()));
    }
    let (program, args) = spec.command.split_first().ok_or(TimedRunError::NoCommand)?;
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| TimedRunError::Spawn {
            program: program.clone(),
            error,
        })?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    spawn_reader(stdout, Stream::Stdout, tx.clone());
    spawn_reader(stderr, Stream::Stderr, tx);

    let deadline = start + spec.timeout;
    let mut open_streams = 2;
    let mut first_result = None;
    let mut timed_out = false;
    let mut pending: [Pending; 2] = Default::default();
    let mut marks: Vec<Option<Duration>> = vec![None; spec.marks.len()];
    let mut stopped = false;
    // The end of a stdout line part already relayed by --partial-after: a mark may span it.
    let mut relayed_part: Vec<u8> = Vec::new();
    let longest_mark = spec.marks.iter().map(String::len).max().unwrap_or(0);
    let mut relay = |stream: Stream, bytes: &[u8], at: Instant| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        if stream == Stream::Stdout && first_result.is_none() && text.contains(RESULT_PREFIX) {
            first_result = Some(at - start);
        }
        let _ = writeln!(out, "{}", Relayed::format(&spec.label, stream, text));
        let _ = out.flush();
    };
    while open_streams > 0 {
        // Once every mark was seen, stop when the line holding the last one has been relayed
        // whole (a serial console delivers a line in pieces).
        if spec.stop_after_marks
            && !stopped
            && !spec.marks.is_empty()
            && marks.iter().all(Option::is_some)
            && !spec
                .marks
                .iter()
                .any(|m| String::from_utf8_lossy(&pending[0].bytes).contains(m.as_str()))
        {
            stopped = true;
            let _ = child.kill();
        }
        let mut limit = if timed_out {
            deadline + DRAIN_AFTER_KILL
        } else {
            deadline
        };
        if let Some(after) = spec.partial_after {
            for p in &pending {
                if let Some(since) = p.since {
                    limit = limit.min(since + after);
                }
            }
        }
        match rx.recv_timeout(limit.saturating_duration_since(Instant::now())) {
            Ok(Event::Chunk(stream, bytes, at)) => {
                let p = &mut pending[stream_index(stream)];
                p.bytes.extend_from_slice(&bytes);
                if stream == Stream::Stdout {
                    // The line so far: a mark may have begun in an earlier chunk.
                    let mut line = relayed_part.clone();
                    line.extend_from_slice(&p.bytes);
                    let text = String::from_utf8_lossy(&line);
                    for (mark, seen) in spec.marks.iter().zip(&mut marks) {
                        if seen.is_none() && text.contains(mark.as_str()) {
                            *seen = Some(at - start);
                        }
                    }
                }
                while let Some(end) = p.bytes.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = p.bytes.drain(..=end).collect();
                    relay(stream, &line, at);
                    if stream == Stream::Stdout {
                        relayed_part.clear();
                    }
                }
                p.since = if p.bytes.is_empty() {
                    None
                } else {
                    p.since.or(Some(at))
                };
            }
            Ok(Event::Closed(stream)) => {
                let p = &mut pending[stream_index(stream)];
                if !p.bytes.is_empty() {
                    relay(stream, &std::mem::take(&mut p.bytes), Instant::now());
                }
                p.since = None;
                open_streams -= 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if let Some(after) = spec.partial_after {
                    for (stream, p) in [Stream::Stdout, Stream::Stderr]
                        .into_iter()
                        .zip(&mut pending)
                    {
                        if p.since.is_some_and(|since| now >= since + after) {
                            let part = std::mem::take(&mut p.bytes);
                            if stream == Stream::Stdout {
                                relayed_part.extend_from_slice(&part);
                                let keep = longest_mark.saturating_sub(1);
                                let cut = relayed_part.len().saturating_sub(keep);
                                relayed_part.drain(..cut);
                            }
                            relay(stream, &part, now);
                            p.since = None;
                        }
                    }
                }
                if now < deadline {
                    continue;
                }
                if timed_out {
                    if now >= deadline + DRAIN_AFTER_KILL {
                        break;
                    }
                    continue;
                }
                timed_out = true;
                for line in thread_states(child.id()) {
                    relay(Stream::Stderr, line.as_bytes(), now);
                }
                let _ = child.kill();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if !timed_out && Instant::now() > deadline {
        timed_out = true;
    }
    // A child stuck in the kernel may outlive SIGKILL: give up on it after the drain time
    // rather than hang the caller (the record then has neither exit code nor signal).
    let mut killed_at = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                timed_out = true;
                let since = *killed_at.get_or_insert_with(|| {
                    let _ = child.kill();
                    Instant::now()
                });
                if since.elapsed() > DRAIN_AFTER_KILL {
                    let _ = writeln!(
                        out,
                        "{}",
                        Relayed::format(&spec.label, Stream::Stderr, "did not exit after SIGKILL")
                    );
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break None,
        }
    };
    let elapsed = start.elapsed();
    use std::os::unix::process::ExitStatusExt;
    Ok(TimedRun {
        label: spec.label.clone(),
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        first_result_us: first_result.map(|d| d.as_micros() as u64),
        elapsed_us: elapsed.as_micros() as u64,
        marks_us: marks
            .iter()
            .map(|m| m.map(|d| d.as_micros() as u64))
            .collect(),
    })
}

/// One line per thread of process `pid` (name, state, kernel wait channel), printed when it
/// is killed at its timeout: what a hung VMM was doing.
fn thread_states(pid: u32) -> Vec<String> {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut lines: Vec<String> = tasks
        .filter_map(|t| t.ok())
        .map(|t| {
            let dir = t.path();
            let stat = read(dir.join("stat"));
            // `pid (comm) S ...`: the state follows the last parenthesis.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_string();
            format!(
                "timeout: thread {} {:?} state {state} wchan {}",
                t.file_name().to_string_lossy(),
                read(dir.join("comm")).trim(),
                read(dir.join("wchan")).trim()
            )
        })
        .collect();
    lines.sort();
    lines
}

fn spawn_reader(mut pipe: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .send(Event::Chunk(stream, buf[..n].to_vec(), Instant::now()))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::Closed(stream));
    });
}

/// Runs `spec` and prints its record; returns the record.
pub fn run_and_report(spec: &TimedRunSpec) -> Result<TimedRun, TimedRunError> {
    let result = run(spec)?;
    Record::TimedRun(result.clone()).emit();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(label: &str, timeout_ms: u64, script: &str) -> TimedRunSpec {
        TimedRunSpec {
            label: label.into(),
            timeout: Duration::from_millis(timeout_ms),
            command: vec!["sh".into(), "-c".into(), script.into()],
            partial_after: None,
            marks: Vec::new(),
            stop_after_marks: false,
        }
    }

    #[test]
    fn marks_are_timed_as_output_arrives_and_can_end_the_run() {
        // The prompt arrives in pieces and ends its line later; the command would sleep on.
        let script = "echo 'Reached target Multi-User'; sleep 0.3; printf 'host lo'; sleep 0.2; \
                      printf 'gin: '; sleep 0.3; echo rest; exec sleep 15";
        let mut s = spec("m", 30_000, script);
        s.marks = vec!["login:".into(), "Multi-User".into()];
        s.stop_after_marks = true;
        let (r, lines) = relayed(&s);
        assert!(!r.timed_out);
        let [Some(login), Some(target)] = r.marks_us[..] else {
            panic!("{:?}", r.marks_us)
        };
        assert!(target < login, "{target} {login}");
        assert!(
            (500_000..800_000).contains(&login),
            "timed when the prompt was complete, before its line ended: {login}"
        );
        assert!(
            r.elapsed_us < 10_000_000,
            "killed at the marks: {}",
            r.elapsed_us
        );
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert!(
            lines.contains(&"m| host login: rest".to_string()),
            "{lines:?}"
        );

        // A mark split by a partial relay is still seen.
        let mut s = spec(
            "q",
            30_000,
            "printf 'log'; sleep 0.4; printf 'in: '; sleep 0.3; echo; exec sleep 15",
        );
        s.partial_after = Some(Duration::from_millis(100));
        s.marks = vec!["login:".into()];
        s.stop_after_marks = true;
        let (r, lines) = relayed(&s);
        assert!(
            r.marks_us[0].is_some_and(|t| t >= 400_000),
            "{:?}",
            r.marks_us
        );
        assert!(r.elapsed_us < 10_000_000, "{}", r.elapsed_us);
        assert_eq!(&lines[..2], ["q| log", "q| in: "]);

        // A mark never seen is None and, with stop_after_marks, the run goes on to its end.
        let mut s = spec("n", 30_000, "echo one; echo two");
        s.marks = vec!["two".into(), "three".into()];
        s.stop_after_marks = true;
        let r = run(&s).unwrap();
        assert_eq!(r.exit_code, Some(0));
        assert!(
            r.marks_us[0].is_some() && r.marks_us[1].is_none(),
            "{:?}",
            r.marks_us
        );
    }

    #[test]
    fn measures_first_result_and_exit_code() {
        let r = run(&spec(
            "t1",
            10_000,
            "echo booting; echo oops >&2; echo 'VGPU-RESULT {}'; exit 3",
        ))
        .unwrap();
        assert_eq!(r.exit_code, Some(3));
        assert!(!r.timed_out);
        assert!(r.first_result_us.is_some());
        assert!(r.first_result_us.unwrap() <= r.elapsed_us);
    }

    fn relayed(spec: &TimedRunSpec) -> (TimedRun, Vec<String>) {
        let mut out = Vec::new();
        let r = run_to(spec, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        (r, text.lines().map(str::to_string).collect())
    }

    #[test]
    fn a_line_without_newline_is_relayed_after_the_quiet_time_only_when_asked() {
        let script = "printf 'login: '; sleep 1; echo; printf 'tail'";
        let mut with = spec("p", 10_000, script);
        with.partial_after = Some(Duration::from_millis(200));
        let (r, lines) = relayed(&with);
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(lines, ["p| login: ", "p| ", "p| tail"]);
        // Without it the prompt waits for its newline.
        let (_, lines) = relayed(&spec("p", 10_000, script));
        assert_eq!(lines, ["p| login: ", "p| tail"]);
    }

    #[test]
    fn whole_lines_and_streams_are_kept_apart() {
        let (_, lines) = relayed(&spec("s", 10_000, "echo a; echo b >&2; printf 'c\\nd\\n'"));
        assert!(lines.contains(&"s| a".to_string()), "{lines:?}");
        assert!(lines.contains(&"s! b".to_string()), "{lines:?}");
        let c = lines.iter().position(|l| l == "s| c").unwrap();
        assert_eq!(lines[c + 1], "s| d");
    }

    #[test]
    fn kills_at_timeout() {
        let r = run(&spec("t2", 200, "exec sleep 30")).unwrap();
        assert!(r.timed_out);
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert_eq!(r.first_result_us, None);
    }

    #[test]
    fn thread_states_name_every_thread_of_a_process() {
        let child = std::thread::Builder::new()
            .name("sleeper".into())
            .spawn(|| std::thread::sleep(Duration::from_secs(2)))
            .unwrap();
        // The thread names itself and falls asleep a moment after `spawn` returns.
        let start = std::time::Instant::now();
        let lines = loop {
            let lines = thread_states(std::process::id());
            if lines.iter().any(|l| l.contains("\"sleeper\" state S"))
                || start.elapsed() > Duration::from_secs(1)
            {
                break lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(
            lines.iter().any(|l| l.contains("\"sleeper\" state S")),
            "{lines:?}"
        );
        assert!(thread_states(u32::MAX).is_empty());
        child.join().unwrap();
    }

    #[test]
    fn rejects_bad_labels_and_missing_commands() {
        assert!(matches!(
            run(&spec("a b", 100, "true")),
            Err(TimedRunError::BadLabel(_))
        ));
        let empty = TimedRunSpec {
            label: "x".into(),
            timeout: Duration::from_secs(1),
            command: vec![],
            ..spec("x", 1000, "true")
        };
        assert!(matches!(run(&empty), Err(TimedRunError::NoCommand)));
    }
}
