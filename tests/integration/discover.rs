//! The discovery and CivitAI tools through the real binary, against a fake registry, CivitAI
//! and Hugging Face (support/fake_web.rs), a fake ComfyUI, and a scratch ComfyUI folder holding
//! ComfyUI-Manager's lists: ranking and de-duplication, partial failures, offline mode, keys that
//! never leak, missing nodes with ComfyUI up and down, and instructions that install nothing.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::support::fake_comfy::FakeComfy;
use crate::support::fake_web::{CIVITAI, FakeWeb, HUGGINGFACE, REGISTRY, WebFault};
use crate::support::{RawStdio, Scratch, failed, fixture, ok, result_text};

/// A ComfyUI address nothing listens on.
const DOWN: &str = "http://127.0.0.1:9/";

/// A scratch ComfyUI folder: ComfyUI-Manager with its three lists, KJNodes installed, one
/// checkpoint and one LoRA on disk.
fn comfy_folder(scratch: &Scratch) -> PathBuf {
    let base = scratch.dir.path().join("comfy");
    let manager = base.join("custom_nodes/ComfyUI-Manager");
    std::fs::create_dir_all(&manager).expect("mkdir");
    for name in [
        "custom-node-list.json",
        "extension-node-map.json",
        "model-list.json",
    ] {
        std::fs::copy(fixture(&format!("web/manager/{name}")), manager.join(name)).expect("copy");
    }
    // A pack is a folder with Python in it, as ComfyUI loads them.
    for pack in ["ComfyUI-Manager", "ComfyUI-KJNodes"] {
        let folder = base.join("custom_nodes").join(pack);
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(folder.join("__init__.py"), "NODE_CLASS_MAPPINGS = {}\n").expect("write");
    }
    for (folder, file) in [
        ("checkpoints", "realisticVision_v60B1.safetensors"),
        ("loras/xl", "face_detailer_xl.safetensors"),
        ("vae", ""),
        ("upscale_models", ""),
    ] {
        let dir = base.join("models").join(folder);
        std::fs::create_dir_all(&dir).expect("mkdir");
        if !file.is_empty() {
            std::fs::write(dir.join(file), b"weights").expect("write");
        }
    }
    base
}

struct Setup {
    scratch: Scratch,
    web: FakeWeb,
    comfy_dir: PathBuf,
}

impl Setup {
    async fn new() -> Self {
        let scratch = Scratch::new();
        let comfy_dir = comfy_folder(&scratch);
        Self {
            scratch,
            web: FakeWeb::start().await,
            comfy_dir,
        }
    }

    /// The agent pointed at the fakes, ComfyUI at `comfy_url`, plus `extra` settings.
    async fn agent(&self, comfy_url: &str, extra: &[(&str, &str)]) -> RawStdio {
        let dir = self.comfy_dir.display().to_string();
        let web_env = self.web.env();
        let mut env: Vec<(&str, &str)> = vec![("COMFYUI_URL", comfy_url), ("COMFYUI_DIR", &dir)];
        env.extend(web_env.iter().map(|(k, v)| (*k, v.as_str())));
        env.extend_from_slice(extra);
        let mut agent = RawStdio::spawn_with(&self.scratch, &env);
        agent.initialize().await;
        agent
    }
}

fn names(report: &Value) -> Vec<String> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect()
}

fn error_kinds(report: &Value) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["source"].as_str().unwrap_or("").to_string(),
                e["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    kinds.sort();
    kinds
}

#[tokio::test]
async fn discover_ranks_installed_then_partner_then_score_and_merges_duplicates() {
    let setup = Setup::new().await;
    let mut agent = setup.agent(DOWN, &[]).await;
    let result = agent
        .call_tool(1, "discover", json!({"query": "face"}))
        .await;
    let report = ok(&result);
    assert_eq!(
        names(report),
        [
            "Face Detailer LoRA",
            "ComfyUI-Hunyuan3DWrapper",
            "ComfyUI Impact Pack",
            "Face Detailer Extra",
            "someone/face-detailer"
        ],
        "{report}"
    );
    let first = &report["results"][0];
    assert_eq!(first["installed"], true, "the LoRA is on disk: {first}");
    assert_eq!(first["source"], "civitai");
    assert_eq!(first["filename"], "face_detailer_xl.safetensors");
    assert_eq!(report["results"][1]["source_tier"], "partner");
    let impact = &report["results"][2];
    assert_eq!(impact["relevance_score"], 1.0);
    let sources = [
        impact["source"].as_str().expect("source"),
        impact["also_found_on"][0].as_str().expect("also found"),
    ];
    assert!(
        sources.contains(&"registry_nodes") && sources.contains(&"comfy_registry"),
        "one entry for the pack both lists know: {impact}"
    );
    assert_eq!(impact["id"], "comfyui-impact-pack");
    assert_eq!(
        report["sources_searched"],
        json!([
            "civitai",
            "comfy_registry",
            "huggingface",
            "registry_models",
            "registry_nodes"
        ])
    );
    assert_eq!(report["total"], 5);
    assert!(report.get("errors").is_none(), "{report}");

    // Nodes only: no model source is asked.
    let before = setup.web.hits(CIVITAI);
    let result = agent
        .call_tool(
            2,
            "discover",
            json!({"query": "GetImageSizeAndCount", "category": "nodes", "max_results": 3}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(setup.web.hits(CIVITAI), before);
    assert_eq!(
        report["results"][0]["name"], "KJNodes for ComfyUI",
        "node types are searched"
    );
    assert_eq!(report["results"][0]["installed"], true);

    // The Manager's model list, filtered by type.
    let result = agent
        .call_tool(
            3,
            "discover",
            json!({"query": "ultrasharp", "category": "models", "sources": ["registry"], "model_type": "upscaler"}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(names(report), ["4x-UltraSharp"]);
    assert_eq!(report["results"][0]["source"], "registry_models");
    assert_eq!(report["sources_searched"], json!(["registry_models"]));
}

#[tokio::test]
async fn discover_sends_the_documented_queries() {
    let setup = Setup::new().await;
    let mut agent = setup.agent(DOWN, &[]).await;
    let result = agent
        .call_tool(
            1,
            "discover",
            json!({"query": "face", "category": "models", "sources": ["civitai", "huggingface"],
                   "model_type": "lora", "base_model": "sdxl", "sort": "highest_rated", "max_results": 50}),
        )
        .await;
    ok(&result);
    let seen = setup.web.seen();
    let civitai = seen
        .iter()
        .find(|s| s.source == CIVITAI)
        .expect("civitai asked");
    let get = |q: &[(String, String)], key: &str| {
        q.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(civitai.path, "models");
    assert_eq!(get(&civitai.query, "types"), "LORA");
    assert_eq!(get(&civitai.query, "baseModels"), "SDXL 1.0");
    assert_eq!(get(&civitai.query, "sort"), "Highest Rated");
    assert_eq!(get(&civitai.query, "nsfw"), "false");
    assert_eq!(get(&civitai.query, "limit"), "20", "capped");
    let hf = seen
        .iter()
        .find(|s| s.source == HUGGINGFACE)
        .expect("hf asked");
    assert_eq!(hf.path, "api/models");
    assert_eq!(get(&hf.query, "sort"), "downloads");
    assert_eq!(get(&hf.query, "direction"), "-1");
    assert_eq!(get(&hf.query, "filter"), "lora");
    assert!(
        !seen.iter().any(|s| s.source == REGISTRY),
        "sources not chosen are not asked"
    );

    let bad = agent
        .call_tool(2, "discover", json!({"query": "x", "sources": ["github"]}))
        .await;
    assert!(failed(&bad).contains("sources"));
    let bad = agent
        .call_tool(3, "discover", json!({"query": "x", "category": "loras"}))
        .await;
    assert!(failed(&bad).contains("category"));
    let bad = agent.call_tool(4, "discover", json!({})).await;
    assert!(failed(&bad).contains("query"));
    let blank = agent
        .call_tool(5, "discover", json!({"query": "   "}))
        .await;
    assert!(failed(&blank).contains("empty"));
}

#[tokio::test]
async fn discover_reports_failed_sources_and_returns_the_rest() {
    let setup = Setup::new().await;
    setup.web.fail(CIVITAI, WebFault::Status(500));
    setup.web.fail(HUGGINGFACE, WebFault::RateLimited(30));
    setup.web.fail(REGISTRY, WebFault::Malformed);
    let mut agent = setup.agent(DOWN, &[]).await;
    let result = agent
        .call_tool(1, "discover", json!({"query": "face"}))
        .await;
    let report = ok(&result);
    assert_eq!(
        names(report),
        ["ComfyUI Impact Pack"],
        "the Manager's list still answers"
    );
    assert_eq!(
        error_kinds(report),
        [
            ("civitai".to_string(), "web_status".to_string()),
            ("comfy_registry".to_string(), "web_malformed".to_string()),
            ("huggingface".to_string(), "web_rate_limited".to_string()),
        ]
    );
    let text = report["errors"].to_string();
    assert!(text.contains("Wait about 30 seconds"), "{text}");
    assert!(
        text.contains("HF_TOKEN"),
        "says how to raise the limit: {text}"
    );

    // Healed sources answer again (failures are not cached).
    setup.web.heal(CIVITAI);
    setup.web.heal(HUGGINGFACE);
    setup.web.heal(REGISTRY);
    let result = agent
        .call_tool(2, "discover", json!({"query": "face"}))
        .await;
    let report = ok(&result);
    assert_eq!(report["total"], 5, "{report}");
}

#[tokio::test]
async fn discover_names_a_source_that_times_out() {
    let setup = Setup::new().await;
    setup.web.fail(HUGGINGFACE, WebFault::Hang);
    let mut agent = setup
        .agent(DOWN, &[("COMFYUI_AGENT_WEB_TIMEOUT", "1")])
        .await;
    let result = agent
        .call_tool(
            1,
            "discover",
            json!({"query": "face", "category": "models"}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(
        error_kinds(report),
        [("huggingface".to_string(), "web_timeout".to_string())]
    );
    assert!(names(report).contains(&"Face Detailer LoRA".to_string()));
}

#[tokio::test]
async fn offline_mode_searches_local_lists_and_names_the_skipped_sources() {
    let setup = Setup::new().await;
    let mut agent = setup.agent(DOWN, &[("COMFYUI_AGENT_OFFLINE", "1")]).await;
    let result = agent
        .call_tool(1, "discover", json!({"query": "impact"}))
        .await;
    let report = ok(&result);
    assert_eq!(names(report), ["ComfyUI Impact Pack"]);
    assert_eq!(
        error_kinds(report),
        [
            ("civitai".to_string(), "web_offline".to_string()),
            ("comfy_registry".to_string(), "web_offline".to_string()),
            ("huggingface".to_string(), "web_offline".to_string()),
        ]
    );
    assert!(
        report["errors"]
            .to_string()
            .contains("COMFYUI_AGENT_OFFLINE")
    );

    // Instructions from the Manager's lists need no network.
    let result = agent
        .call_tool(
            2,
            "get_install_instructions",
            json!({"query": "FaceDetailer"}),
        )
        .await;
    assert_eq!(ok(&result)["pack_title"], "ComfyUI Impact Pack");
    let result = agent
        .call_tool(3, "get_civitai_model", json!({"model_id": 4201}))
        .await;
    assert!(failed(&result).contains("offline"));
    let result = agent
        .call_tool(4, "check_registry_freshness", json!({}))
        .await;
    assert_eq!(ok(&result)["offline"], true);
    assert_eq!(setup.web.seen().len(), 0, "nothing was asked online");
}

#[tokio::test]
async fn keys_travel_as_headers_and_never_appear_in_results() {
    let setup = Setup::new().await;
    let key = "civitai-secret-key-123";
    let token = "hf-secret-token-456";
    let mut agent = setup
        .agent(DOWN, &[("CIVITAI_API_KEY", key), ("HF_TOKEN", token)])
        .await;
    let mut texts = Vec::new();
    let calls = [
        ("discover", json!({"query": "face"})),
        ("get_civitai_model", json!({"model_id": 4201})),
        ("get_civitai_model", json!({"model_id": 1})),
        ("get_trending_models", json!({})),
        (
            "get_install_instructions",
            json!({"query": "4201", "source": "civitai"}),
        ),
        ("check_registry_freshness", json!({})),
    ];
    for (id, (name, args)) in calls.into_iter().enumerate() {
        let result = agent.call_tool(id as i64 + 1, name, args).await;
        texts.push(result.to_string());
    }
    for text in &texts {
        assert!(!text.contains(key) && !text.contains(token), "{text}");
    }
    let freshness: Value = serde_json::from_str(texts.last().expect("freshness")).expect("json");
    let sources = &freshness["structuredContent"]["web_sources"];
    assert_eq!(sources[1]["source"], "civitai");
    assert_eq!(sources[1]["key_configured"], true);
    assert_eq!(sources[0]["key_configured"], false);

    let seen = setup.web.seen();
    let bearer = format!("Bearer {key}");
    assert!(
        seen.iter()
            .filter(|s| s.source == CIVITAI)
            .all(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );
    assert!(
        seen.iter()
            .filter(|s| s.source == HUGGINGFACE)
            .all(|s| s.authorization.as_deref() == Some(format!("Bearer {token}").as_str()))
    );
    assert!(
        seen.iter()
            .filter(|s| s.source == REGISTRY)
            .all(|s| s.authorization.is_none()),
        "a key goes only to its own source"
    );
    assert!(
        seen.iter()
            .all(|s| !s.query.iter().any(|(_, v)| v.contains(key))),
        "never in a URL"
    );
}

#[tokio::test]
async fn find_missing_nodes_maps_each_missing_type_to_its_pack() {
    let fake = FakeComfy::start().await;
    let setup = Setup::new().await;
    let mut agent = setup.agent(&fake.url(), &[]).await;
    let workflow = json!({
        "1": {"class_type": "KSampler", "inputs": {}},
        "2": {"class_type": "FaceDetailer", "inputs": {}},
        "3": {"class_type": "UltimateSDUpscale", "inputs": {}},
        "4": {"class_type": "GetImageSizeAndCount", "inputs": {}},
        "5": {"class_type": "TotallyUnknownNode", "inputs": {}},
        "6": {"class_type": "SAMLoader", "inputs": {}}
    });
    let result = agent
        .call_tool(1, "find_missing_nodes", json!({"workflow": workflow}))
        .await;
    let report = ok(&result);
    assert_eq!(report["status"], "missing_nodes", "{report}");
    assert_eq!(report["comfyui_running"], true);
    assert_eq!(report["total_node_types"], 6);
    assert_eq!(report["installed_count"], 1);
    assert_eq!(report["missing_count"], 5);
    let packs = report["packs_to_install"].as_array().expect("packs");
    let find = |title: &str| {
        packs
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("{title} in {report}"))
    };
    let impact = find("ComfyUI Impact Pack");
    assert_eq!(
        impact["missing_nodes"],
        json!(["FaceDetailer", "SAMLoader"])
    );
    assert_eq!(impact["installed"], false);
    assert_eq!(impact["id"], "comfyui-impact-pack");
    let upscale = find("UltimateSDUpscale");
    assert_eq!(
        upscale["id"], "comfyui_ultimatesdupscale",
        "found via the registry"
    );
    let kj = find("KJNodes for ComfyUI");
    assert_eq!(kj["installed"], true, "its folder is there");
    let missing = report["missing_nodes"].as_array().expect("missing");
    let kj_node = missing
        .iter()
        .find(|m| m["node_type"] == "GetImageSizeAndCount")
        .expect("kj node");
    assert!(
        kj_node["message"]
            .as_str()
            .expect("message")
            .contains("failed to load")
    );
    assert_eq!(
        report["unresolved_node_types"],
        json!(["TotallyUnknownNode"])
    );
    let seen = setup.web.seen();
    assert!(
        seen.iter()
            .any(|s| s.path == "comfy-nodes/UltimateSDUpscale/node"),
        "the registry maps a class the Manager doesn't know"
    );
    assert!(
        !seen.iter().any(|s| s.path.contains("FaceDetailer")),
        "the Manager's map is asked first"
    );
}

#[tokio::test]
async fn find_missing_nodes_reads_ui_workflows_files_and_the_loaded_workflow() {
    let fake = FakeComfy::start().await;
    let setup = Setup::new().await;
    let mut agent = setup.agent(&fake.url(), &[]).await;
    let ui = json!({
        "nodes": [
            {"id": 1, "type": "KSampler", "widgets_values": []},
            {"id": 2, "type": "Note", "widgets_values": ["hello"]},
            {"id": 3, "type": "Reroute"},
            {"id": 4, "type": "FaceDetailer"}
        ],
        "links": []
    });
    let path = setup.scratch.allowed().join("workflows/ui_missing.json");
    std::fs::write(&path, ui.to_string()).expect("write");
    let result = agent
        .call_tool(
            1,
            "find_missing_nodes",
            json!({"path": path.display().to_string()}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(
        report["total_node_types"], 2,
        "Note and Reroute are skipped"
    );
    assert_eq!(report["missing_nodes"][0]["node_type"], "FaceDetailer");
    assert_eq!(report["missing_nodes"][0]["found_in"], "registry_nodes");

    // Everything installed.
    let result = agent
        .call_tool(
            2,
            "find_missing_nodes",
            json!({"workflow": crate::support::solid()}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["status"], "all_installed");
    assert_eq!(report["missing_count"], 0);

    // The loaded workflow, when no path is given.
    let none = agent.call_tool(3, "find_missing_nodes", json!({})).await;
    assert!(failed(&none).contains("No workflow is loaded"));
    let load = agent
        .call_tool(
            4,
            "load_workflow",
            json!({"workflow": crate::support::solid()}),
        )
        .await;
    ok(&load);
    let result = agent.call_tool(5, "find_missing_nodes", json!({})).await;
    assert_eq!(ok(&result)["status"], "all_installed");

    // Paths outside the allowed folders, broken files, empty workflows.
    let outside = agent
        .call_tool(
            6,
            "find_missing_nodes",
            json!({"path": setup.scratch.path("outside/secret.json")}),
        )
        .await;
    assert!(failed(&outside).contains("outside"));
    let broken = agent
        .call_tool(
            7,
            "find_missing_nodes",
            json!({"path": setup.scratch.allowed().join("workflows/broken.json").display().to_string()}),
        )
        .await;
    assert!(failed(&broken).contains("not valid JSON"));
    let empty = agent
        .call_tool(
            8,
            "find_missing_nodes",
            json!({"workflow": {"nodes": [{"id": 1, "type": "Note"}]}}),
        )
        .await;
    assert!(failed(&empty).contains("No nodes found"));
}

#[tokio::test]
async fn find_missing_nodes_still_helps_when_comfyui_is_down() {
    let setup = Setup::new().await;
    let mut agent = setup.agent(DOWN, &[]).await;
    let workflow = json!({
        "1": {"class_type": "KSampler", "inputs": {}},
        "2": {"class_type": "FaceDetailer", "inputs": {}},
        "3": {"class_type": "GetImageSizeAndCount", "inputs": {}}
    });
    let result = agent
        .call_tool(1, "find_missing_nodes", json!({"workflow": workflow}))
        .await;
    let report = ok(&result);
    assert_eq!(report["status"], "installed_state_unknown", "{report}");
    assert_eq!(report["comfyui_running"], false);
    assert_eq!(report["installed_count"], Value::Null);
    assert!(
        report["message"]
            .as_str()
            .expect("message")
            .contains("isn't reachable")
    );
    let titles: Vec<&str> = report["packs_to_install"]
        .as_array()
        .expect("packs")
        .iter()
        .map(|p| p["title"].as_str().expect("title"))
        .collect();
    assert_eq!(titles, ["KJNodes for ComfyUI", "ComfyUI Impact Pack"]);
    assert_eq!(
        report["unresolved_node_types"],
        json!(["KSampler"]),
        "the registry says KSampler is built in"
    );
    assert_eq!(
        error_kinds(report)
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        ["comfyui"]
    );
}

#[tokio::test]
async fn install_instructions_are_text_with_the_install_folders() {
    let setup = Setup::new().await;
    let mut agent = setup.agent(DOWN, &[]).await;
    let custom_nodes = std::fs::canonicalize(setup.comfy_dir.join("custom_nodes"))
        .expect("folder")
        .display()
        .to_string();

    let result = agent
        .call_tool(
            1,
            "get_install_instructions",
            json!({"query": "FaceDetailer"}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["type"], "node_pack");
    assert_eq!(report["installed"], false);
    let commands: Vec<&str> = report["install_commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c.as_str().expect("text"))
        .collect();
    assert_eq!(commands[0], format!("cd {custom_nodes}"));
    assert_eq!(
        commands[1],
        "git clone https://github.com/ltdrdata/ComfyUI-Impact-Pack"
    );
    assert!(commands[3].ends_with("-m pip install -r requirements.txt"));
    assert!(
        report["steps"]
            .to_string()
            .contains("comfy node install comfyui-impact-pack")
    );
    assert!(
        !setup
            .comfy_dir
            .join("custom_nodes/ComfyUI-Impact-Pack")
            .exists(),
        "nothing is installed"
    );

    // Installed packs need nothing.
    let result = agent
        .call_tool(
            2,
            "get_install_instructions",
            json!({"query": "GetImageSizeAndCount"}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["installed"], true);
    assert_eq!(report["install_commands"], json!([]));

    // A class only the registry knows; a built-in one; an unknown one.
    let result = agent
        .call_tool(
            3,
            "get_install_instructions",
            json!({"query": "UltimateSDUpscale"}),
        )
        .await;
    assert_eq!(ok(&result)["pack_id"], "comfyui_ultimatesdupscale");
    let result = agent
        .call_tool(4, "get_install_instructions", json!({"query": "KSampler"}))
        .await;
    assert!(failed(&result).contains("built into ComfyUI"));
    let result = agent
        .call_tool(
            5,
            "get_install_instructions",
            json!({"query": "nothing-like-this"}),
        )
        .await;
    assert!(failed(&result).contains("Could not find 'nothing-like-this'"));

    // Models: the Manager's list, CivitAI and Hugging Face, each with its folder.
    let result = agent
        .call_tool(
            6,
            "get_install_instructions",
            json!({"query": "4x-UltraSharp"}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["type"], "model");
    assert!(
        report["save_to"]
            .as_str()
            .expect("folder")
            .ends_with("upscale_models")
    );
    assert!(
        report["install_commands"][0]
            .as_str()
            .expect("curl")
            .starts_with("curl -L -o")
    );

    let result = agent
        .call_tool(
            7,
            "get_install_instructions",
            json!({"query": "4201", "source": "civitai"}),
        )
        .await;
    let report = ok(&result);
    assert!(
        report["save_to"]
            .as_str()
            .expect("folder")
            .ends_with("checkpoints")
    );
    assert_eq!(report["installed"], true, "the checkpoint is on disk");
    let result = agent
        .call_tool(
            8,
            "get_install_instructions",
            json!({"query": "77", "source": "civitai"}),
        )
        .await;
    assert!(failed(&result).contains("Model 77 not found on CivitAI."));

    let result = agent
        .call_tool(
            9,
            "get_install_instructions",
            json!({"query": "stabilityai/sdxl-vae", "source": "huggingface", "model_type": "vae"}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["url"], "https://huggingface.co/stabilityai/sdxl-vae");
    assert!(report["save_to"].as_str().expect("folder").ends_with("vae"));

    let result = agent
        .call_tool(
            11,
            "get_install_instructions",
            json!({"query": "https://github.com/someone/ComfyUI-Other-Pack"}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["pack_title"], "ComfyUI-Other-Pack");
    assert_eq!(
        report["install_commands"][2], "cd ComfyUI-Other-Pack",
        "a repository address gives instructions without a list"
    );
    let result = agent
        .call_tool(
            12,
            "get_install_instructions",
            json!({"query": "https://github.com/x/y;touch${IFS}z"}),
        )
        .await;
    let text = result_text(&result);
    assert!(
        !text.contains("git clone https://github.com/x/y;"),
        "{text}"
    );

    let bad = agent
        .call_tool(
            10,
            "get_install_instructions",
            json!({"query": "x", "source": "pypi"}),
        )
        .await;
    assert!(failed(&bad).contains("source"));
}

#[tokio::test]
async fn registry_freshness_reports_ages_and_refresh_clears_caches() {
    let setup = Setup::new().await;
    let manager = setup.comfy_dir.join("custom_nodes/ComfyUI-Manager");
    let day = Duration::from_secs(24 * 3600);
    for (file, age) in [
        ("model-list.json", 10 * day),
        ("extension-node-map.json", 31 * day),
    ] {
        std::fs::File::options()
            .write(true)
            .open(manager.join(file))
            .and_then(|f| f.set_modified(SystemTime::now() - age))
            .expect("set mtime");
    }
    let mut agent = setup.agent(DOWN, &[]).await;
    ok(&agent
        .call_tool(1, "discover", json!({"query": "impact"}))
        .await);
    let result = agent
        .call_tool(2, "check_registry_freshness", json!({}))
        .await;
    let report = ok(&result);
    assert_eq!(report["registries"]["custom_node_list"]["status"], "fresh");
    assert_eq!(report["registries"]["model_list"]["status"], "stale");
    assert_eq!(
        report["registries"]["extension_node_map"]["status"],
        "very_stale"
    );
    assert_eq!(report["manager_installed"], true);
    assert_eq!(report["cache"]["manager_lists_cached"], true);
    assert!(report["cache"]["web_answers"].as_u64().expect("count") > 0);
    assert_eq!(report["models"]["types"]["checkpoints"], 1);
    assert!(
        report["recommendations"]
            .to_string()
            .contains("extension-node-map.json")
    );
    assert_eq!(report["refreshed"], false);

    let result = agent
        .call_tool(3, "check_registry_freshness", json!({"refresh": true}))
        .await;
    let report = ok(&result);
    assert_eq!(report["refreshed"], true);
    assert_eq!(report["cache"]["web_answers"], 0);
    assert_eq!(report["cache"]["manager_lists_cached"], false);

    let bad = agent
        .call_tool(4, "check_registry_freshness", json!({"refresh": "yes"}))
        .await;
    assert!(failed(&bad).contains("refresh"));
}

#[tokio::test]
async fn civitai_model_details_are_capped_and_cleaned() {
    let setup = Setup::new().await;
    let mut agent = setup.agent(DOWN, &[]).await;
    let result = agent
        .call_tool(1, "get_civitai_model", json!({"model_id": 4201}))
        .await;
    let report = ok(&result);
    assert_eq!(report["name"], "Realistic Vision");
    assert_eq!(report["type"], "Checkpoint");
    assert_eq!(
        report["description"],
        "About Photo-real portraits & landscapes. Use CFG 5 to 7."
    );
    assert_eq!(report["tags"].as_array().expect("tags").len(), 10);
    assert_eq!(report["tags"][0], "base model", "sorted");
    let versions = report["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 5);
    assert_eq!(
        versions[0]["example_images"],
        json!([
            "https://image.civitai.com/1.jpeg",
            "https://image.civitai.com/3.jpeg",
            "https://image.civitai.com/4.jpeg"
        ]),
        "at most three, none marked NSFW"
    );
    assert_eq!(versions[0]["created_at"], "2023-12-05");
    assert_eq!(versions[0]["installed"], true);
    assert_eq!(versions[1]["installed"], false);
    assert_eq!(versions[0]["files"][0]["format"], "SafeTensor");
    assert_eq!(report["stats"]["downloads"], 2_000_000);
    assert_eq!(report["url"], "https://civitai.com/models/4201");
    assert_eq!(report["save_folder"], "checkpoints");

    let missing = agent
        .call_tool(2, "get_civitai_model", json!({"model_id": 123}))
        .await;
    assert!(failed(&missing).starts_with("Model 123 not found on CivitAI."));
    for (id, bad) in [
        (3, json!({"model_id": "abc"})),
        (4, json!({"model_id": 0})),
        (5, json!({})),
    ] {
        let result = agent.call_tool(id, "get_civitai_model", bad).await;
        assert!(failed(&result).contains("model_id"));
    }
    setup.web.fail(CIVITAI, WebFault::Status(503));
    let down = agent
        .call_tool(6, "get_civitai_model", json!({"model_id": 9001}))
        .await;
    let text = failed(&down);
    assert!(text.contains("CivitAI") && text.contains("503"), "{text}");
}

#[tokio::test]
async fn trending_models_filter_by_type_base_model_and_period() {
    let setup = Setup::new().await;
    let mut agent = setup.agent(DOWN, &[]).await;
    let result = agent.call_tool(1, "get_trending_models", json!({})).await;
    let report = ok(&result);
    assert_eq!(report["source"], "civitai_trending");
    assert_eq!(report["period"], "week");
    let ids: Vec<u64> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, [4201, 9001], "the NSFW model is left out");
    assert_eq!(report["showing"], 2);
    assert_eq!(report["results"][0]["installed"], true);
    assert_eq!(report["results"][0]["base_model"], "SD 1.5");
    assert_eq!(report["results"][0]["latest_version"], "V6.0 B1");

    let result = agent
        .call_tool(
            2,
            "get_trending_models",
            json!({"model_type": "lora", "base_model": "sdxl", "period": "month", "max_results": 50}),
        )
        .await;
    let report = ok(&result);
    assert_eq!(report["type_filter"], "lora");
    assert_eq!(report["base_model_filter"], "SDXL 1.0");
    assert_eq!(report["results"][0]["name"], "Face Detailer LoRA");
    let last = setup.web.seen().into_iter().last().expect("asked");
    let query: std::collections::HashMap<String, String> = last.query.into_iter().collect();
    assert_eq!(query["sort"], "Most Downloaded");
    assert_eq!(query["period"], "Month");
    assert_eq!(query["types"], "LORA");
    assert_eq!(query["nsfw"], "false");
    assert_eq!(query["limit"], "20");

    let bad = agent
        .call_tool(3, "get_trending_models", json!({"period": "year"}))
        .await;
    assert!(failed(&bad).contains("period"));
    let bad = agent
        .call_tool(4, "get_trending_models", json!({"model_type": "poses"}))
        .await;
    assert!(failed(&bad).contains("model_type"));
    setup.web.fail(CIVITAI, WebFault::Malformed);
    let result = agent
        .call_tool(5, "get_trending_models", json!({"period": "day"}))
        .await;
    let text = failed(&result);
    assert!(text.contains("isn't the JSON expected"), "{text}");
    let _ = result_text(&result);
}

#[tokio::test]
async fn find_missing_nodes_says_when_the_registry_could_not_be_asked() {
    let fake = FakeComfy::start().await;
    let setup = Setup::new().await;
    setup.web.fail(REGISTRY, WebFault::Status(502));
    let mut agent = setup.agent(&fake.url(), &[]).await;
    let workflow = json!({
        "1": {"class_type": "FaceDetailer", "inputs": {}},
        "2": {"class_type": "UltimateSDUpscale", "inputs": {}}
    });
    let result = agent
        .call_tool(1, "find_missing_nodes", json!({"workflow": workflow}))
        .await;
    let report = ok(&result);
    assert_eq!(report["missing_count"], 2);
    assert_eq!(
        report["packs_to_install"][0]["title"], "ComfyUI Impact Pack",
        "the Manager's map still answers"
    );
    let upscale = report["missing_nodes"]
        .as_array()
        .expect("missing")
        .iter()
        .find(|m| m["node_type"] == "UltimateSDUpscale")
        .expect("listed");
    assert!(
        upscale["message"]
            .as_str()
            .expect("message")
            .contains("couldn't be asked"),
        "{upscale}"
    );
    assert_eq!(
        error_kinds(report),
        [("comfy_registry".to_string(), "web_status".to_string())]
    );
}

/// The tool's declared output schema, from the tool list snapshot.
fn output_schema(tool: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/tools.json"),
    )
    .expect("tool list snapshot");
    let tools: Value = serde_json::from_str(&text).expect("json");
    let schema = tools
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["name"] == tool)
        .unwrap_or_else(|| panic!("{tool} in the snapshot"))["outputSchema"]
        .clone();
    jsonschema::validator_for(&schema).expect("schema compiles")
}

#[tokio::test]
async fn every_answer_fits_its_declared_output_schema() {
    let fake = FakeComfy::start().await;
    let setup = Setup::new().await;
    setup.web.fail(HUGGINGFACE, WebFault::Status(500));
    let mut up = setup.agent(&fake.url(), &[]).await;
    let mut down = setup.agent(DOWN, &[]).await;
    let workflow = json!({
        "1": {"class_type": "KSampler", "inputs": {}},
        "2": {"class_type": "FaceDetailer", "inputs": {}},
        "3": {"class_type": "TotallyUnknownNode", "inputs": {}}
    });
    let calls = [
        ("discover", json!({"query": "face"})),
        (
            "discover",
            json!({"query": "ultrasharp", "category": "models"}),
        ),
        ("find_missing_nodes", json!({"workflow": workflow})),
        (
            "find_missing_nodes",
            json!({"workflow": crate::support::solid()}),
        ),
        ("get_install_instructions", json!({"query": "FaceDetailer"})),
        (
            "get_install_instructions",
            json!({"query": "GetImageSizeAndCount"}),
        ),
        (
            "get_install_instructions",
            json!({"query": "4x-UltraSharp"}),
        ),
        (
            "get_install_instructions",
            json!({"query": "4201", "source": "civitai"}),
        ),
        (
            "get_install_instructions",
            json!({"query": "stabilityai/sdxl-vae", "source": "huggingface"}),
        ),
        ("check_registry_freshness", json!({"refresh": true})),
        ("get_civitai_model", json!({"model_id": 4201})),
        ("get_trending_models", json!({"model_type": "checkpoint"})),
    ];
    let mut id = 0;
    for (tool, args) in calls {
        let validator = output_schema(tool);
        for agent in [&mut up, &mut down] {
            id += 1;
            let result = agent.call_tool(id, tool, args.clone()).await;
            let value = ok(&result);
            let problems: Vec<String> = validator
                .iter_errors(value)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(problems.is_empty(), "{tool} {args}: {problems:?}\n{value}");
        }
    }
}
