//! Soak: does memory level off in a long-running HTTP server?
//!
//! Starts the real binary in `serve` mode on a free loopback port (a scratch data folder, a
//! bearer token, and `COMFYUI_URL` pointing at a closed port, so only the offline tools work),
//! opens 100 Streamable HTTP sessions, and makes 10,000 `tools/call`s spread round-robin across
//! them by 8 concurrent workers: loading, patching, undoing, diffing and listing each session's
//! own 45-node workflow, named sessions shared between connections, notes saved to disk,
//! model-family lookups, server health, and `validate_workflow`, which fails offline with an
//! `isError` result (the error path). Every answer must be the expected JSON-RPC result.
//!
//! The server's resident memory (`VmRSS` in `/proc/<pid>/status`) is sampled before the calls
//! and after every 500, and once more after every session is closed with HTTP DELETE. The run
//! fails if memory keeps growing over the second half (calls 5,000 to 10,000) by more than
//! 10% of what it was at 5,000 calls *and* more than 8 MiB; see [`GROWTH_FLOOR`] for why.
//! The whole run has a hard deadline of 5 minutes.
//!
//! Run with `cargo bench --bench soak` (Linux only: elsewhere it says so and exits 0).

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    #[cfg(target_os = "linux")]
    {
        soak::main()
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout().lock(),
            "the soak bench needs Linux (it reads the server's memory from /proc); skipped"
        );
        ExitCode::SUCCESS
    }
}

#[cfg(target_os = "linux")]
mod soak {
    use std::collections::VecDeque;
    use std::io::Write;
    use std::path::Path;
    use std::process::{ExitCode, Stdio};
    use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use serde_json::{Map, Value, json};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};

    const SESSIONS: usize = 100;
    /// Calls in the run; `SOAK_CALLS` sets another count (a multiple of 1,000) for a longer
    /// look, `SOAK_PACE_MS` a pause each worker takes between calls (to spread the run over
    /// rmcp's 60 s resume window, see docs/operations.md).
    const CALLS: usize = 10_000;

    fn calls() -> usize {
        setting("SOAK_CALLS", CALLS).max(1_000) / 1_000 * 1_000
    }

    fn pace() -> Duration {
        Duration::from_millis(setting("SOAK_PACE_MS", 0) as u64)
    }

    fn setting(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }
    const WORKERS: usize = 8;
    const SAMPLE_EVERY: usize = 500;
    /// Named sessions the connections share (`session` argument), a few per name.
    const NAMED: usize = 10;
    /// The whole run, start-up to shutdown.
    const DEADLINE: Duration = Duration::from_secs(300);
    /// Allowed growth over the second half, as a fraction of the RSS at its start…
    const GROWTH_FRACTION: f64 = 0.10;
    /// …and in bytes: growth must pass both to fail the run. The allocator does not hand
    /// memory back page by page: glibc keeps freed chunks in per-thread arenas and grows a
    /// heap in steps, so a server that holds steady still moves by a few MiB as requests
    /// land on different threads. 8 MiB over 5,000 calls is about 1.7 KB per call: a leak
    /// of any per-call object bigger than that (a request's workflow, a response body, a
    /// session's history entry) fails the run, and so does any steady leak of 10% of the
    /// server's size per 5,000 calls.
    const GROWTH_FLOOR: u64 = 8 * MIB;
    const MIB: u64 = 1024 * 1024;
    const TOKEN: &str = "soak-test-token-0123456789abcdef";
    const ACCEPT: &str = "application/json, text/event-stream";
    const PROTOCOL: &str = "2025-06-18";

    /// The server's pid, for the panic hook and the watchdog.
    static SERVER_PID: AtomicU32 = AtomicU32::new(0);

    fn kill_server() {
        let pid = SERVER_PID.swap(0, Ordering::SeqCst);
        if pid != 0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    pub(crate) fn main() -> ExitCode {
        // A panic (even with panic = "abort") and a hung run both still take the server down.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            kill_server();
            default_hook(info);
        }));
        std::thread::spawn(|| {
            std::thread::sleep(DEADLINE + Duration::from_secs(30));
            kill_server();
            eprintln!("soak: still running {DEADLINE:?} + 30 s after the start; killed");
            std::process::exit(2);
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let scratch = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let outcome = runtime.block_on(async {
            match tokio::time::timeout(DEADLINE, run(scratch.path())).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!(
                    "the soak did not finish within its deadline of {DEADLINE:?}"
                )),
            }
        });
        kill_server();
        let mut out = std::io::stdout().lock();
        match outcome {
            Ok(report) => {
                let ok = report.print(&mut out, started.elapsed());
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => {
                let _ = writeln!(out, "soak FAILED: {error}");
                ExitCode::FAILURE
            }
        }
    }

    /// What one run measured.
    struct Report {
        idle: u64,
        /// (calls made, RSS) from 0 to all of them.
        curve: Vec<(usize, u64)>,
        closed: u64,
        calls_took: Duration,
        tool_errors: u64,
    }

    impl Report {
        fn at(&self, calls: usize) -> u64 {
            self.curve
                .iter()
                .find(|(n, _)| *n == calls)
                .map_or(0, |(_, rss)| *rss)
        }

        /// Prints the curve and the verdict; whether memory levelled off.
        fn print(&self, out: &mut impl Write, elapsed: Duration) -> bool {
            let mib = |bytes: u64| bytes as f64 / MIB as f64;
            let calls = calls();
            let _ = writeln!(
                out,
                "soak: {calls} tools/call over {SESSIONS} HTTP sessions, {WORKERS} at a time, \
                 in {:.1?} ({:.0} calls/s; {} expected tool errors); whole run {:.1?}",
                self.calls_took,
                calls as f64 / self.calls_took.as_secs_f64(),
                self.tool_errors,
                elapsed
            );
            let _ = writeln!(out, "{:>8}  {:>8}", "calls", "RSS MiB");
            let _ = writeln!(out, "{:>8}  {:>8.1}", "idle", mib(self.idle));
            for (calls, rss) in &self.curve {
                let _ = writeln!(out, "{calls:>8}  {:>8.1}", mib(*rss));
            }
            let _ = writeln!(out, "{:>8}  {:>8.1}", "closed", mib(self.closed));
            let half = self.at(calls / 2);
            let end = self.at(calls);
            let growth = end.saturating_sub(half);
            let fraction = growth as f64 / half.max(1) as f64;
            let _ = writeln!(
                out,
                "growth over the second half ({} -> {calls} calls): {:+.2} MiB ({:+.1}%, {:.0} bytes per call)",
                calls / 2,
                (end as f64 - half as f64) / MIB as f64,
                (end as f64 - half as f64) / half.max(1) as f64 * 100.0,
                growth as f64 / (calls / 2) as f64
            );
            let levelled = growth <= GROWTH_FLOOR || fraction <= GROWTH_FRACTION;
            if levelled {
                let _ = writeln!(
                    out,
                    "verdict: memory levels off (limit: growth above {:.0}% and above {} MiB)  ok",
                    GROWTH_FRACTION * 100.0,
                    GROWTH_FLOOR / MIB
                );
            } else {
                let _ = writeln!(
                    out,
                    "verdict: MEMORY KEEPS GROWING: {:.1} MiB ({:.1}%) over the second half, above \
                     both {:.0}% and {} MiB; something kept per call or per session is not freed",
                    mib(growth),
                    fraction * 100.0,
                    GROWTH_FRACTION * 100.0,
                    GROWTH_FLOOR / MIB
                );
            }
            levelled
        }
    }

    async fn run(scratch: &Path) -> Result<Report, String> {
        let mut server = Server::start(scratch).await?;
        let result = soak(&server).await;
        let result = match result {
            Ok(report) => server.stop().await.map(|()| report),
            Err(error) => Err(format!(
                "{error}\nlast server log lines:\n{}",
                server.log_tail()
            )),
        };
        drop(server);
        result
    }

    async fn soak(server: &Server) -> Result<Report, String> {
        let mcp = Mcp::new(&server.base)?;
        let idle = server.rss()?;
        let mut sessions = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            sessions.push(mcp.open().await?);
        }
        let shared = Arc::new(Shared {
            mcp,
            sessions,
            pid: server.pid,
            done: AtomicUsize::new(0),
            tool_errors: AtomicU64::new(0),
            curve: Mutex::new(vec![(0, server.rss()?)]),
        });
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..WORKERS {
            let shared = Arc::clone(&shared);
            workers.spawn(async move { shared.work(worker).await });
        }
        while let Some(joined) = workers.join_next().await {
            let outcome = joined.map_err(|e| format!("a worker stopped: {e}"))?;
            if let Err(error) = outcome {
                workers.abort_all();
                return Err(error);
            }
        }
        let calls_took = started.elapsed();
        let done = shared.done.load(Ordering::SeqCst);
        if done != calls() {
            return Err(format!("made {done} calls, not {}", calls()));
        }

        // Every connection and named session is still known to the server…
        let health = shared
            .mcp
            .call(&shared.sessions[0], 1, "get_server_health", json!({}))
            .await?;
        expect_sessions(&health, SESSIONS as u64, NAMED as u64, "before closing")?;
        // …and closing the connections forgets them: a closed session is refused, and a
        // fresh connection sees only itself.
        for session in &shared.sessions {
            shared.mcp.close(session).await?;
        }
        shared.mcp.expect_gone(&shared.sessions[0]).await?;
        let probe = shared.mcp.open().await?;
        let health = shared
            .mcp
            .call(&probe, 1, "get_server_health", json!({}))
            .await?;
        expect_sessions(&health, 1, NAMED as u64, "after closing")?;
        shared.mcp.close(&probe).await?;
        // Closing is asynchronous inside the server; give it a moment before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let closed = server.rss()?;
        let curve = shared
            .curve
            .lock()
            .map_err(|_| "curve lock".to_string())?
            .clone();
        Ok(Report {
            idle,
            curve,
            closed,
            calls_took,
            tool_errors: shared.tool_errors.load(Ordering::SeqCst),
        })
    }

    fn expect_sessions(
        health: &Value,
        connections: u64,
        named: u64,
        when: &str,
    ) -> Result<(), String> {
        let sessions = &health["structuredContent"]["sessions"];
        if sessions["connections"] == connections && sessions["named"] == named {
            Ok(())
        } else {
            Err(format!(
                "{when}: get_server_health counts sessions {sessions}, expected {connections} \
                 connections and {named} named"
            ))
        }
    }

    struct Shared {
        mcp: Mcp,
        sessions: Vec<String>,
        pid: u32,
        done: AtomicUsize,
        tool_errors: AtomicU64,
        curve: Mutex<Vec<(usize, u64)>>,
    }

    impl Shared {
        /// Worker `w` owns the sessions `w`, `w + WORKERS`, … and visits them in turn, so
        /// each session's calls run in order (a patch before its undo) while the calls as a
        /// whole go round-robin across every session.
        async fn work(&self, worker: usize) -> Result<(), String> {
            let pace = pace();
            for step in 0..calls() / SESSIONS {
                for index in (worker..SESSIONS).step_by(WORKERS) {
                    let (tool, arguments, fails) = call_for(index, step);
                    let id = (step * SESSIONS + index + 10) as u64;
                    let result = self
                        .mcp
                        .call(&self.sessions[index], id, tool, arguments)
                        .await
                        .map_err(|e| format!("session {index}, step {step}: {e}"))?;
                    check(tool, &result, fails)
                        .map_err(|e| format!("session {index}, step {step}: {e}"))?;
                    if fails {
                        self.tool_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if !pace.is_zero() {
                        tokio::time::sleep(pace).await;
                    }
                    let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
                    if done.is_multiple_of(SAMPLE_EVERY) {
                        let rss = rss(self.pid)?;
                        self.curve
                            .lock()
                            .map_err(|_| "curve lock".to_string())?
                            .push((done, rss));
                    }
                }
            }
            Ok(())
        }
    }

    /// Checks a tool's result: an `isError` result only where one is expected, and the
    /// figures each tool must report.
    fn check(tool: &str, result: &Value, fails: bool) -> Result<(), String> {
        let is_error = result["isError"] == true;
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        if is_error != fails {
            return Err(format!(
                "{tool}: expected {}, got: {}",
                if fails { "a tool error" } else { "success" },
                if text.is_empty() {
                    result.to_string()
                } else {
                    text.to_string()
                }
            ));
        }
        if fails {
            return if text.contains("ComfyUI") {
                Ok(())
            } else {
                Err(format!(
                    "{tool}: an error that doesn't name ComfyUI: {text}"
                ))
            };
        }
        let content = &result["structuredContent"];
        let fine = match tool {
            "load_workflow" => content["node_count"] == NODES,
            "apply_workflow_patch" => content["applied"].as_u64().is_some_and(|n| n > 0),
            "get_editable_fields" => content["total_fields"].as_u64().is_some_and(|n| n > 0),
            "identify_model_family" => content["family"].is_string(),
            "get_server_health" => content["sessions"]["connections"] == SESSIONS as u64,
            _ => content.is_object(),
        };
        if fine {
            Ok(())
        } else {
            Err(format!("{tool}: unexpected result {content}"))
        }
    }

    const NODES: u64 = 45;

    /// A 45-node API workflow for session `index`: SD1.5 text-to-image, then a chain of
    /// image filters before the save. Seeds and prompts differ per session.
    fn workflow(index: usize) -> Value {
        let mut nodes = Map::new();
        nodes.insert("1".into(), json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}}));
        nodes.insert("2".into(), json!({"class_type": "CLIPTextEncode", "inputs": {"text": format!("a lighthouse at dusk, session {index}"), "clip": ["1", 1]}}));
        nodes.insert("3".into(), json!({"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, low quality", "clip": ["1", 1]}}));
        nodes.insert("4".into(), json!({"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}}));
        nodes.insert(
            "5".into(),
            json!({"class_type": "KSampler", "inputs": {
            "seed": index, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
            "latent_image": ["4", 0]}}),
        );
        nodes.insert(
            "6".into(),
            json!({"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}),
        );
        for n in 7..NODES as u32 {
            let image = json!([(n - 1).to_string(), 0]);
            let node = match n % 4 {
                0 => {
                    json!({"class_type": "ImageBlur", "inputs": {"image": image, "blur_radius": 1 + n % 30, "sigma": 1.5}})
                }
                1 => {
                    json!({"class_type": "ImageSharpen", "inputs": {"image": image, "sharpen_radius": 2, "sigma": 1.0, "alpha": 0.5}})
                }
                2 => {
                    json!({"class_type": "ImageScaleBy", "inputs": {"image": image, "upscale_method": "bicubic", "scale_by": 1.0}})
                }
                _ => json!({"class_type": "ImageInvert", "inputs": {"image": image}}),
            };
            nodes.insert(n.to_string(), node);
        }
        nodes.insert(
            NODES.to_string(),
            json!({"class_type": "SaveImage", "inputs": {"images": [(NODES - 1).to_string(), 0], "filename_prefix": "soak"}}),
        );
        Value::Object(nodes)
    }

    const MODELS: [&str; 5] = [
        "sd_xl_base_1.0.safetensors",
        "flux1-dev-fp8.safetensors",
        "v1-5-pruned-emaonly.safetensors",
        "wan2.1_t2v_14B_fp16.safetensors",
        "loras/pony/style.safetensors",
    ];

    /// The call session `index` makes at `step` (a cycle of 20), and whether it fails.
    fn call_for(index: usize, step: usize) -> (&'static str, Value, bool) {
        let named = format!("soak-named-{}", index % NAMED);
        let value = (index * 1_000 + step) as u64;
        let model = MODELS[(index + step) % MODELS.len()];
        match step % 20 {
            0 => ("load_workflow", json!({"workflow": workflow(index)}), false),
            1 => (
                "get_editable_fields",
                json!({"class_filter": "KSampler"}),
                false,
            ),
            2 => (
                "apply_workflow_patch",
                json!({"patches": [{"op": "replace", "path": "/5/inputs/seed", "value": value}]}),
                false,
            ),
            3 => (
                "apply_workflow_patch",
                json!({"patches": [
                    {"op": "replace", "path": "/2/inputs/text", "value": format!("a harbour in fog, take {value}")},
                    {"op": "replace", "path": "/5/inputs/steps", "value": 20 + step % 10}
                ]}),
                false,
            ),
            4 => ("get_workflow_diff", json!({}), false),
            5 => ("undo_workflow_patch", json!({}), false),
            6 => ("identify_model_family", json!({"model_name": model}), false),
            7 => (
                "apply_workflow_patch",
                json!({"patches": [
                    {"op": "add", "path": "/99", "value": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}},
                    {"op": "replace", "path": "/4/inputs/width", "value": 768}
                ]}),
                false,
            ),
            8 => ("validate_workflow", json!({}), true),
            9 => ("get_editable_fields", json!({}), false),
            10 => (
                "apply_workflow_patch",
                json!({"session": named, "workflow": workflow(index),
                       "patches": [{"op": "replace", "path": "/5/inputs/cfg", "value": 6.5}]}),
                false,
            ),
            11 => ("get_workflow_diff", json!({"session": named}), false),
            12 => ("undo_workflow_patch", json!({}), false),
            13 => (
                "add_note",
                json!({"session_name": named, "note": format!("seed {value} looked right")}),
                false,
            ),
            14 => (
                "get_server_health",
                json!({"tool": "apply_workflow_patch"}),
                false,
            ),
            15 => (
                "apply_workflow_patch",
                json!({"patches": [{"op": "replace", "path": "/8/inputs/blur_radius", "value": 1 + step % 30}]}),
                false,
            ),
            16 => ("get_workflow_diff", json!({}), false),
            17 => ("undo_workflow_patch", json!({}), false),
            18 => ("identify_model_family", json!({"model_name": model}), false),
            _ => ("get_server_health", json!({}), false),
        }
    }

    /// Resident memory of `pid`, from `/proc/<pid>/status`.
    fn rss(pid: u32) -> Result<u64, String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("reading the server's memory: {e}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| "no VmRSS line in /proc/<pid>/status".to_string())
    }

    /// The binary serving HTTP on a free loopback port.
    struct Server {
        child: Child,
        pid: u32,
        base: String,
        log: Arc<Mutex<VecDeque<String>>>,
    }

    impl Server {
        async fn start(scratch: &Path) -> Result<Self, String> {
            // A port that was free a moment ago and has nothing listening: ComfyUI is down.
            let closed = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|e| format!("finding a closed port: {e}"))?;
            let mut child = Command::new(env!("CARGO_BIN_EXE_comfyui-agent"))
                .args(["serve", "--bind", "127.0.0.1:0"])
                .current_dir(scratch)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", scratch)
                // The listening address is read from the start-up line; the rest at warn.
                .env("RUST_LOG", "warn,comfyui_agent::transport=info")
                .env("COMFYUI_AGENT_DATA_DIR", scratch.join("data"))
                .env("COMFYUI_URL", format!("http://{closed}"))
                .env("COMFYUI_AGENT_TOKEN", TOKEN)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("starting the server: {e}"))?;
            let pid = child.id().ok_or("the server exited at once")?;
            SERVER_PID.store(pid, Ordering::SeqCst);
            let stderr = child.stderr.take().ok_or("no stderr")?;
            let mut lines = BufReader::new(stderr).lines();
            let log = Arc::new(Mutex::new(VecDeque::new()));
            let addr = tokio::time::timeout(Duration::from_secs(20), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.split("addr=").nth(1) {
                        return rest.split_whitespace().next().map(str::to_string);
                    }
                    push_line(&log, line);
                }
                None
            })
            .await
            .ok()
            .flatten();
            let Some(addr) = addr else {
                let tail = log
                    .lock()
                    .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default();
                return Err(format!("the server did not start listening:\n{tail}"));
            };
            // Keep draining stderr so the server never blocks on a full pipe.
            let sink = Arc::clone(&log);
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    push_line(&sink, line);
                }
            });
            Ok(Self {
                child,
                pid,
                base: format!("http://{addr}"),
                log,
            })
        }

        fn rss(&self) -> Result<u64, String> {
            rss(self.pid)
        }

        fn log_tail(&self) -> String {
            self.log
                .lock()
                .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default()
        }

        /// SIGTERM, and a clean exit within the server's grace period.
        async fn stop(&mut self) -> Result<(), String> {
            let pid = self.pid.to_string();
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .map_err(|e| format!("sending SIGTERM: {e}"))?;
            let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .map_err(|_| "the server did not exit within 15 s of SIGTERM".to_string())?
                .map_err(|e| format!("waiting for the server: {e}"))?;
            SERVER_PID.store(0, Ordering::SeqCst);
            if status.success() {
                Ok(())
            } else {
                Err(format!("the server exited with {status} after SIGTERM"))
            }
        }
    }

    fn push_line(log: &Mutex<VecDeque<String>>, line: String) {
        if let Ok(mut log) = log.lock() {
            if log.len() == 40 {
                log.pop_front();
            }
            log.push_back(line);
        }
    }

    /// Streamable HTTP spoken with reqwest: one POST per JSON-RPC message.
    struct Mcp {
        http: reqwest::Client,
        url: String,
    }

    impl Mcp {
        fn new(base: &str) -> Result<Self, String> {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?;
            Ok(Self {
                http,
                url: format!("{base}/mcp"),
            })
        }

        async fn post(
            &self,
            session: Option<&str>,
            body: &Value,
        ) -> Result<reqwest::Response, String> {
            let mut request = self
                .http
                .post(&self.url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .header("accept", ACCEPT)
                .body(body.to_string());
            if let Some(session) = session {
                request = request
                    .header("mcp-session-id", session)
                    .header("mcp-protocol-version", PROTOCOL);
            }
            request.send().await.map_err(|e| format!("POST /mcp: {e}"))
        }

        /// initialize + notifications/initialized; the session's id.
        async fn open(&self) -> Result<String, String> {
            let initialize = json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                           "clientInfo": {"name": "soak", "version": "1"}}
            });
            let response = self.post(None, &initialize).await?;
            let session = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| format!("initialize: no Mcp-Session-Id ({})", response.status()))?;
            let body = response
                .text()
                .await
                .map_err(|e| format!("initialize: {e}"))?;
            let reply = message(&body, 0)?;
            if reply["result"]["serverInfo"]["name"] != "comfyui-agent" {
                return Err(format!("initialize: unexpected answer {reply}"));
            }
            let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            let response = self.post(Some(&session), &initialized).await?;
            if response.status() != reqwest::StatusCode::ACCEPTED {
                return Err(format!("notifications/initialized: {}", response.status()));
            }
            Ok(session)
        }

        /// One `tools/call`; its result (a JSON-RPC error fails).
        async fn call(
            &self,
            session: &str,
            id: u64,
            tool: &str,
            arguments: Value,
        ) -> Result<Value, String> {
            let request = json!({
                "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}
            });
            let response = self.post(Some(session), &request).await?;
            let status = response.status();
            let body = response.text().await.map_err(|e| format!("{tool}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{tool}: HTTP {status}: {body}"));
            }
            let reply = message(&body, id)?;
            match reply.get("result") {
                Some(result) if reply.get("error").is_none() => Ok(result.clone()),
                _ => Err(format!("{tool}: not a JSON-RPC result: {reply}")),
            }
        }

        /// HTTP DELETE ends the session.
        async fn close(&self, session: &str) -> Result<(), String> {
            let response = self
                .http
                .delete(&self.url)
                .bearer_auth(TOKEN)
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", PROTOCOL)
                .send()
                .await
                .map_err(|e| format!("DELETE /mcp: {e}"))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("DELETE /mcp: {}", response.status()))
            }
        }

        /// A closed session is refused with 404.
        async fn expect_gone(&self, session: &str) -> Result<(), String> {
            let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
            let response = self.post(Some(session), &ping).await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(format!(
                    "a closed session still answers: HTTP {}",
                    response.status()
                ))
            }
        }
    }

    /// The JSON-RPC message with `id` in a response body: plain JSON, or server-sent events
    /// (possibly with notifications before it).
    fn message(body: &str, id: u64) -> Result<Value, String> {
        if let Ok(value) = serde_json::from_str::<Value>(body) {
            return Ok(value);
        }
        body.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message["id"] == id)
            .ok_or_else(|| format!("no answer to request {id} in: {body}"))
    }
}
