//! The price table (DESIGN §7): shipped as data (`prices.yaml`), overridable per model in
//! `~/.autowrkers/pricing.yaml`. Lookup tolerates the ids providers really return: vendor
//! prefixes (`openai/gpt-4o`), dated or versioned suffixes (`gpt-4o-2024-08-06`,
//! `gemini-1.5-pro-002`). An unknown model has an unknown cost — never $0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{ProviderType, TokenUsage};
use crate::store::Home;

const BUILT_IN: &str = include_str!("prices.yaml");

/// USD per million tokens of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Prompt tokens.
    pub input: f64,
    /// Completion tokens.
    pub output: f64,
    /// Prompt tokens served from cache (default: `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to cache (default: `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// The model's output cap, for worst-case reservations.
    #[serde(default)]
    pub max_output: Option<u64>,
}

impl Price {
    /// USD of `usage` at this price.
    pub fn cost(&self, usage: &TokenUsage) -> f64 {
        let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
        per(usage.input, self.input)
            + per(usage.output, self.output)
            + per(usage.cached_input, self.cached_input.unwrap_or(self.input))
            + per(usage.cache_write, self.cache_write.unwrap_or(self.input))
    }
}

#[derive(Debug, Clone, Deserialize)]
struct PriceFile {
    #[serde(default)]
    checked: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, Price>,
}

/// How a model is priced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pricing {
    /// From the table (built-in or override).
    Table(Price),
    /// Local or scripted: $0 by rule.
    Free,
    /// Not in the table: cost unknown.
    Unknown,
}

/// The built-in table merged with the user's overrides.
#[derive(Debug, Clone)]
pub struct PriceTable {
    models: BTreeMap<String, Price>,
    /// When the built-in table was last compared with the vendors' lists.
    pub checked: String,
}

impl PriceTable {
    /// The built-in table plus `~/.autowrkers/pricing.yaml` when present (a broken override file
    /// is reported, not ignored).
    pub fn load(home: &Home) -> Result<Self, crate::spec::SpecError> {
        let mut table = Self::built_in();
        let path = home.root().join("pricing.yaml");
        if path.exists() {
            let text = crate::spec::load::read(&path)?;
            let file: PriceFile = crate::spec::from_yaml(&text, &path)?;
            table.models.extend(
                file.models
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v)),
            );
        }
        Ok(table)
    }

    /// The table shipped in the binary, parsed once per process (a run loads the prices for
    /// its estimate and again for its budget guard; the YAML takes about 0.2 ms).
    pub fn built_in() -> Self {
        static PARSED: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
        PARSED.get_or_init(Self::parse_built_in).clone()
    }

    fn parse_built_in() -> Self {
        let shipped = std::path::Path::new("built-in prices.yaml");
        let file: PriceFile = crate::spec::from_yaml(BUILT_IN, shipped).unwrap_or(PriceFile {
            checked: None,
            models: BTreeMap::new(),
        });
        Self {
            models: file
                .models
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            checked: file.checked.unwrap_or_default(),
        }
    }

    /// How `model` of `provider` is priced.
    pub fn pricing(&self, provider: &str, model: &str) -> Pricing {
        match provider {
            "ollama" | "lm_studio" | "scripted" | "none" => return Pricing::Free,
            _ => {}
        }
        self.lookup(model).map_or(Pricing::Unknown, Pricing::Table)
    }

    /// The price of `model`, tolerant of prefixes and dated suffixes.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        let lower = model.trim().to_ascii_lowercase();
        let lower = lower.trim_start_matches("models/");
        let bare = lower.rsplit('/').next().unwrap_or(lower);
        for candidate in [lower, bare] {
            if let Some(p) = self.models.get(candidate) {
                return Some(*p);
            }
        }
        // The longest entry that the id starts with, followed by a `-` or `@` suffix.
        self.models
            .iter()
            .filter(|(k, _)| {
                bare.strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('@'))
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| *p)
    }
}

/// Whether a provider type is free by rule.
pub fn is_local(kind: ProviderType) -> bool {
    matches!(
        kind,
        ProviderType::Ollama | ProviderType::LmStudio | ProviderType::Scripted | ProviderType::None
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_tolerates_real_ids() {
        let t = PriceTable::built_in();
        assert_eq!(t.lookup("gpt-4o-2024-08-06").map(|p| p.input), Some(2.50));
        assert_eq!(
            t.lookup("gpt-4o-mini").map(|p| p.input),
            Some(0.15),
            "longest prefix wins"
        );
        assert_eq!(t.lookup("openai/gpt-4-turbo").map(|p| p.output), Some(30.0));
        assert_eq!(
            t.lookup("models/gemini-1.5-pro-002").map(|p| p.input),
            Some(1.25)
        );
        assert_eq!(
            t.lookup("claude-3-5-haiku-20241022").map(|p| p.output),
            Some(4.0)
        );
        assert!(t.lookup("my-finetune").is_none());
        assert_eq!(t.pricing("ollama", "anything"), Pricing::Free);
        assert_eq!(
            t.pricing("openai_compatible", "my-finetune"),
            Pricing::Unknown
        );
        assert!(!t.checked.is_empty());
    }

    #[test]
    fn cost_prices_every_kind_of_token() {
        let p = Price {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.3),
            cache_write: Some(3.75),
            max_output: None,
        };
        let usage = TokenUsage {
            input: 1_000_000,
            output: 100_000,
            cached_input: 2_000_000,
            cache_write: 400_000,
        };
        let expected = 3.0 + 1.5 + 0.6 + 1.5;
        assert!((p.cost(&usage) - expected).abs() < 1e-9);
    }
}
