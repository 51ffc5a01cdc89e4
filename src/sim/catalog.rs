//! The synthetic world: models with their real list prices, features with their
//! traffic shares, token sizes and model mix, tenants and regions.

/// An LLM with its list price per token, in picodollars (an exact integer:
/// $2.50 per million tokens is 2,500,000 picodollars per token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: &'static str,
    pub input_picos_per_token: i128,
    pub output_picos_per_token: i128,
}

/// List prices as published by the vendors in 2024-2025 (Llama 3.1 70B at a typical
/// hosted price). Picodollars per token equal micro-dollars per million tokens:
/// 2_500_000 is $2.50 per million tokens.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "gpt-4o",
        input_picos_per_token: 2_500_000,
        output_picos_per_token: 10_000_000,
    },
    ModelSpec {
        name: "gpt-4o-mini",
        input_picos_per_token: 150_000,
        output_picos_per_token: 600_000,
    },
    ModelSpec {
        name: "claude-sonnet-4",
        input_picos_per_token: 3_000_000,
        output_picos_per_token: 15_000_000,
    },
    ModelSpec {
        name: "claude-haiku-3.5",
        input_picos_per_token: 800_000,
        output_picos_per_token: 4_000_000,
    },
    ModelSpec {
        name: "gemini-1.5-pro",
        input_picos_per_token: 1_250_000,
        output_picos_per_token: 5_000_000,
    },
    ModelSpec {
        name: "gemini-1.5-flash",
        input_picos_per_token: 75_000,
        output_picos_per_token: 300_000,
    },
    ModelSpec {
        name: "o3-mini",
        input_picos_per_token: 1_100_000,
        output_picos_per_token: 4_400_000,
    },
    ModelSpec {
        name: "llama-3.1-70b",
        input_picos_per_token: 880_000,
        output_picos_per_token: 880_000,
    },
];

/// A product feature that calls LLMs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureSpec {
    pub name: &'static str,
    /// Relative share of requests (normalised over the catalog).
    pub share: f64,
    /// Median input tokens and the sigma of their log-normal distribution.
    pub input_median: f64,
    pub input_sigma: f64,
    /// Median output tokens and the sigma of their log-normal distribution.
    pub output_median: f64,
    pub output_sigma: f64,
    /// Model mix: model name and relative weight.
    pub models: &'static [(&'static str, f64)],
}

pub const FEATURES: &[FeatureSpec] = &[
    FeatureSpec {
        name: "support_qa",
        share: 0.16,
        input_median: 1800.0,
        input_sigma: 0.6,
        output_median: 350.0,
        output_sigma: 0.5,
        models: &[
            ("gpt-4o-mini", 0.55),
            ("claude-sonnet-4", 0.25),
            ("gpt-4o", 0.20),
        ],
    },
    FeatureSpec {
        name: "chat",
        share: 0.19,
        input_median: 1200.0,
        input_sigma: 0.8,
        output_median: 400.0,
        output_sigma: 0.7,
        models: &[
            ("gpt-4o", 0.40),
            ("gpt-4o-mini", 0.35),
            ("claude-haiku-3.5", 0.25),
        ],
    },
    FeatureSpec {
        name: "summarize",
        share: 0.10,
        input_median: 6000.0,
        input_sigma: 0.7,
        output_median: 300.0,
        output_sigma: 0.4,
        models: &[
            ("claude-haiku-3.5", 0.5),
            ("gemini-1.5-flash", 0.3),
            ("gpt-4o-mini", 0.2),
        ],
    },
    FeatureSpec {
        name: "search_rerank",
        share: 0.13,
        input_median: 2500.0,
        input_sigma: 0.4,
        output_median: 20.0,
        output_sigma: 0.3,
        models: &[("gpt-4o-mini", 0.6), ("gemini-1.5-flash", 0.4)],
    },
    FeatureSpec {
        name: "code_review",
        share: 0.05,
        input_median: 9000.0,
        input_sigma: 0.8,
        output_median: 900.0,
        output_sigma: 0.6,
        models: &[("claude-sonnet-4", 0.7), ("o3-mini", 0.3)],
    },
    FeatureSpec {
        name: "translate",
        share: 0.05,
        input_median: 800.0,
        input_sigma: 0.6,
        output_median: 800.0,
        output_sigma: 0.6,
        models: &[("gpt-4o-mini", 0.5), ("gemini-1.5-flash", 0.5)],
    },
    FeatureSpec {
        name: "extract_entities",
        share: 0.07,
        input_median: 3000.0,
        input_sigma: 0.6,
        output_median: 150.0,
        output_sigma: 0.5,
        models: &[("gpt-4o-mini", 0.6), ("llama-3.1-70b", 0.4)],
    },
    FeatureSpec {
        name: "classify_ticket",
        share: 0.08,
        input_median: 600.0,
        input_sigma: 0.5,
        output_median: 5.0,
        output_sigma: 0.3,
        models: &[("gemini-1.5-flash", 0.7), ("llama-3.1-70b", 0.3)],
    },
    FeatureSpec {
        name: "draft_email",
        share: 0.04,
        input_median: 700.0,
        input_sigma: 0.5,
        output_median: 450.0,
        output_sigma: 0.5,
        models: &[("gpt-4o", 0.5), ("claude-haiku-3.5", 0.5)],
    },
    FeatureSpec {
        name: "sql_assistant",
        share: 0.03,
        input_median: 4000.0,
        input_sigma: 0.6,
        output_median: 250.0,
        output_sigma: 0.6,
        models: &[("o3-mini", 0.5), ("gpt-4o", 0.5)],
    },
    FeatureSpec {
        name: "doc_qa_rag",
        share: 0.05,
        input_median: 7000.0,
        input_sigma: 0.5,
        output_median: 400.0,
        output_sigma: 0.5,
        models: &[("gemini-1.5-pro", 0.6), ("claude-sonnet-4", 0.4)],
    },
    FeatureSpec {
        name: "agent_planner",
        share: 0.015,
        input_median: 12000.0,
        input_sigma: 0.9,
        output_median: 1500.0,
        output_sigma: 0.7,
        models: &[("claude-sonnet-4", 0.6), ("gpt-4o", 0.4)],
    },
    FeatureSpec {
        name: "sentiment",
        share: 0.025,
        input_median: 300.0,
        input_sigma: 0.4,
        output_median: 3.0,
        output_sigma: 0.2,
        models: &[("llama-3.1-70b", 0.5), ("gemini-1.5-flash", 0.5)],
    },
    FeatureSpec {
        name: "moderation",
        share: 0.03,
        input_median: 400.0,
        input_sigma: 0.5,
        output_median: 4.0,
        output_sigma: 0.2,
        models: &[("gpt-4o-mini", 0.7), ("llama-3.1-70b", 0.3)],
    },
];

/// Regions requests are served from.
pub const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "ap-southeast-1"];

/// A customer organisation; its users mostly run in its home region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantSpec {
    pub name: &'static str,
    /// Relative share of users.
    pub weight: f64,
    /// Index into [`REGIONS`].
    pub home_region: usize,
}

pub const TENANTS: &[TenantSpec] = &[
    TenantSpec {
        name: "acme",
        weight: 0.40,
        home_region: 0,
    },
    TenantSpec {
        name: "globex",
        weight: 0.25,
        home_region: 1,
    },
    TenantSpec {
        name: "initech",
        weight: 0.20,
        home_region: 0,
    },
    TenantSpec {
        name: "umbrella",
        weight: 0.10,
        home_region: 2,
    },
    TenantSpec {
        name: "hooli",
        weight: 0.05,
        home_region: 1,
    },
];

/// Share of a tenant's users served from its home region.
pub const HOME_REGION_SHARE: f64 = 0.9;

/// Zipf exponent of requests over users (1.05: the top 1% of 5,000 users send about
/// half of the requests).
pub const USER_ZIPF_S: f64 = 1.05;

pub fn model_index(name: &str) -> Option<usize> {
    MODELS.iter().position(|m| m.name == name)
}

pub fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| f.name == name)
}

pub fn feature_names() -> impl Iterator<Item = &'static str> {
    FEATURES.iter().map(|f| f.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        assert!((10..=20).contains(&FEATURES.len()));
        assert!((6..=8).contains(&MODELS.len()));
        for f in FEATURES {
            assert!(f.share > 0.0);
            for (m, w) in f.models {
                assert!(
                    model_index(m).is_some(),
                    "{} uses unknown model {m}",
                    f.name
                );
                assert!(*w > 0.0);
            }
        }
        for t in TENANTS {
            assert!(t.home_region < REGIONS.len());
        }
        let gpt4o = &MODELS[model_index("gpt-4o").unwrap()];
        assert_eq!(gpt4o.input_picos_per_token, 2_500_000);
        assert_eq!(gpt4o.output_picos_per_token, 10_000_000);
        let flash = &MODELS[model_index("gemini-1.5-flash").unwrap()];
        assert_eq!(flash.input_picos_per_token, 75_000);
    }
}
