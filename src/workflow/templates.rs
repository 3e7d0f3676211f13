//! The workflow templates this project ships (`templates/` in the repository), embedded in the
//! binary. A template is looked up by name in the catalogue, never by path, so no name can reach
//! a file outside it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

const CATALOGUE: &str = include_str!("../../templates/catalogue.json");

/// The template files, by name. Each is an API-format workflow.
const FILES: &[(&str, &str)] = &[
    (
        "txt2img_sd15",
        include_str!("../../templates/txt2img_sd15.json"),
    ),
    (
        "txt2img_sdxl",
        include_str!("../../templates/txt2img_sdxl.json"),
    ),
    (
        "txt2img_lora",
        include_str!("../../templates/txt2img_lora.json"),
    ),
    ("img2img", include_str!("../../templates/img2img.json")),
    (
        "smoke_test",
        include_str!("../../templates/smoke_test.json"),
    ),
    (
        "invert_image",
        include_str!("../../templates/invert_image.json"),
    ),
];

/// What the catalogue says about a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TemplateInfo {
    pub name: String,
    pub description: String,
    /// The model family it is built for (`sd15`, `sdxl`), or `none` when it needs no model.
    pub base_model: String,
    pub resolution: String,
    /// The model files it names, which must be installed for it to run.
    pub models: Vec<String>,
}

/// Every template, in catalogue order.
pub fn catalogue() -> Vec<TemplateInfo> {
    // The catalogue is part of the binary and checked by the tests below.
    serde_json::from_str(CATALOGUE).unwrap_or_default()
}

/// A template's description and its workflow, by exact name.
pub fn template(name: &str) -> Option<(TemplateInfo, Value)> {
    let info = catalogue().into_iter().find(|info| info.name == name)?;
    let (_, text) = FILES.iter().find(|(file, _)| *file == name)?;
    let workflow = serde_json::from_str(text).ok()?;
    Some((info, workflow))
}

/// The template names, for "did you mean" and completion.
pub fn names() -> Vec<String> {
    catalogue().into_iter().map(|info| info.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::model::Workflow;

    #[test]
    fn every_catalogued_template_has_a_file_and_parses() {
        let catalogue = catalogue();
        assert_eq!(catalogue.len(), FILES.len(), "one catalogue entry per file");
        for info in &catalogue {
            let (_, doc) = template(&info.name).unwrap_or_else(|| panic!("{}", info.name));
            let workflow = Workflow::from_api(&doc).expect("API format");
            for (target, input, link) in workflow.links() {
                assert!(
                    workflow.nodes.contains_key(&link.node),
                    "{}: node {target}.{input} links to missing {}",
                    info.name,
                    link.node
                );
            }
            let saves = workflow
                .nodes
                .values()
                .filter(|node| node.class_type == "SaveImage")
                .count();
            assert_eq!(saves, 1, "{} saves one image", info.name);
            for model in &info.models {
                assert!(
                    doc.to_string().contains(model.as_str()),
                    "{} names {model}",
                    info.name
                );
            }
        }
    }

    #[test]
    fn names_are_looked_up_never_opened() {
        assert!(template("../Cargo").is_none());
        assert!(template("txt2img_sd15.json").is_none());
        assert!(template("").is_none());
        assert!(template("smoke_test").is_some());
        assert!(names().contains(&"invert_image".to_string()));
    }
}
