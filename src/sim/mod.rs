//! Synthetic LLM cost events, deterministic from a seed.
//!
//! A [`Generator`] draws requests from a small world ([`catalog`]): features with
//! their share of traffic, log-normal token sizes and model mix; models with real
//! list prices; tenants with a home region; users Zipf-distributed over a population.
//! Cost is `input_tokens x input price + output_tokens x output price`, exact in
//! [`Money`].
//!
//! Arrivals are a Poisson process whose rate follows [`RateShape`]: flat, or
//! seasonal (daily and weekly rhythm in UTC, times deterministic day-to-day and
//! hour-to-hour noise). An optional [`SpikeSpec`] multiplies one feature's rate from
//! an instant on; the excess is a runaway agent loop: one user, one model.
//!
//! Two ways to draw:
//! - [`Generator::events_between`]: every event, in time order (for `simulate`,
//!   the live demo stream and tests);
//! - [`Generator::weighted_facts`]: a bounded number of weighted samples, each
//!   standing for `k` requests, for long histories where drawing every event would
//!   be too slow (the demo's 30 days).
//!
//! The same seed and configuration give the same events (with the same version of
//! this crate and of `rand`). Spike and rate changes never alter events before the
//! instant they take effect.

pub mod catalog;
pub mod recurring;
mod rhythm;

use std::borrow::Cow;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use rand::distr::weighted::WeightedIndex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, LogNormal, Poisson, StandardNormal, Zipf};

pub use rhythm::{WEEKEND_FACTOR, rhythm};

use crate::calendar::Calendar;
use crate::model::{Agg, Fact};
use crate::money::Money;
use catalog::{FEATURES, HOME_REGION_SHARE, MODELS, REGIONS, TENANTS, USER_ZIPF_S};
use rhythm::{
    DAY_NOISE_SIGMA, FEATURE_DAY_NOISE_SIGMA, HOUR_NOISE_SIGMA, NOISE_DAY, NOISE_FEATURE_DAY,
    NOISE_HOUR, day_index, hour_index, mix64, noise,
};

/// Largest user population (each user is kept in memory with its name).
pub const MAX_USERS: u32 = 10_000_000;

/// Largest input and output sizes drawn (context and output limits).
const MAX_INPUT_TOKENS: f64 = 200_000.0;
const MAX_OUTPUT_TOKENS: f64 = 32_000.0;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("unknown feature {name:?}; the simulator's features are: {known}")]
    UnknownFeature { name: String, known: String },
    #[error("{what} must be a finite number >= 0, got {value}")]
    InvalidRate { what: &'static str, value: f64 },
    #[error("the spike factor must be a finite number > 0, got {0}")]
    InvalidFactor(f64),
    #[error("the user population must be between 1 and {MAX_USERS}, got {0}")]
    Users(u32),
    #[error("the simulator's catalog entry for feature {0:?} is invalid")]
    InvalidCatalog(&'static str),
}

/// How the event rate varies over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateShape {
    /// `base_rate` events per second at all times.
    Flat,
    /// `base_rate x rhythm(t) x noise(t)`: daily and weekly rhythm (averaging 1 over a
    /// week) and deterministic day, feature-day and hour noise.
    #[default]
    Seasonal,
}

/// A runaway on one feature: from `from` on, the feature's rate is multiplied by
/// `factor`. With `factor > 1` the excess comes from one user through one model (as
/// an agent loop would); with `factor < 1` the feature just gets quieter.
#[derive(Debug, Clone, PartialEq)]
pub struct SpikeSpec {
    pub feature: String,
    pub factor: f64,
    pub from: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Size of the user population (Zipf-distributed activity), at most
    /// [`MAX_USERS`].
    pub users: u32,
    /// Events per second: the constant rate of `Flat`, the weekly average of
    /// `Seasonal`.
    pub base_rate: f64,
    pub shape: RateShape,
    /// Scale of the seasonal noise: 0 none, 1 the default sigmas.
    pub noise: f64,
    pub spike: Option<SpikeSpec>,
    /// Mixed into request ids only, so that runs with the same seed writing into
    /// the same table do not repeat ids; events are otherwise independent of it.
    pub run_id: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 1,
            users: 5_000,
            base_rate: 5.0,
            shape: RateShape::Seasonal,
            noise: 1.0,
            spike: None,
            run_id: 0,
        }
    }
}

/// One synthetic request, as a row of `cost_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    pub at: DateTime<Utc>,
    pub feature: Cow<'static, str>,
    pub user: String,
    pub model: Cow<'static, str>,
    pub tenant: Cow<'static, str>,
    pub region: Cow<'static, str>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: Money,
    pub request_id: String,
}

impl SimEvent {
    pub fn into_fact(self) -> Fact {
        Fact {
            at: self.at,
            names: [
                self.feature.into_owned(),
                self.user,
                self.model.into_owned(),
                self.tenant.into_owned(),
                self.region.into_owned(),
            ],
            agg: Agg::one(self.cost, self.input_tokens, self.output_tokens),
        }
    }
}

/// The store's view of one event: a single-row fact.
pub fn to_fact(e: &SimEvent) -> Fact {
    e.clone().into_fact()
}

/// Cost of one request on a catalog model, exact.
pub fn request_cost(model: &catalog::ModelSpec, input_tokens: u64, output_tokens: u64) -> Money {
    Money::from_picos(model.input_picos_per_token).times(input_tokens)
        + Money::from_picos(model.output_picos_per_token).times(output_tokens)
}

/// Who a spike goes through, for checking contributors.
#[derive(Debug, Clone, PartialEq)]
pub struct SpikeTarget<'a> {
    pub feature: &'static str,
    pub user: &'a str,
    pub model: &'static str,
    pub factor: f64,
    pub from: DateTime<Utc>,
}

/// Token counts of one kind for one feature: log-normal per request, rounded and
/// clamped to `[1, max]`.
#[derive(Debug, Clone)]
struct TokenDist {
    dist: LogNormal<f64>,
    /// Mean and standard deviation of one request's count.
    mean: f64,
    sd: f64,
    max: f64,
}

/// Requests above which a sum of token counts is drawn from its normal
/// approximation (central limit) instead of request by request.
const EXACT_SUM_MAX: u64 = 16;

impl TokenDist {
    fn new(median: f64, sigma: f64, max: f64) -> Option<TokenDist> {
        let dist = LogNormal::new(median.ln(), sigma).ok()?;
        let mean = median * (sigma * sigma / 2.0).exp();
        let sd = mean * ((sigma * sigma).exp() - 1.0).sqrt();
        Some(TokenDist {
            dist,
            mean,
            sd,
            max,
        })
    }

    fn one(&self, rng: &mut SmallRng) -> u64 {
        self.dist.sample(rng).round().clamp(1.0, self.max) as u64
    }

    /// The total over `k` requests, distributed as the sum of `k` draws.
    fn sum(&self, k: u64, rng: &mut SmallRng) -> u64 {
        if k <= EXACT_SUM_MAX {
            return (0..k).map(|_| self.one(rng)).sum();
        }
        let z: f64 = StandardNormal.sample(rng);
        let total = k as f64 * self.mean + (k as f64).sqrt() * self.sd * z;
        (total.round() as u64).clamp(k, (k as f64 * self.max) as u64)
    }
}

#[derive(Debug, Clone)]
struct FeatureModel {
    share: f64,
    input: TokenDist,
    output: TokenDist,
    /// Model mix: (model index, probability), probabilities summing to 1.
    mix: Vec<(usize, f64)>,
    pick_model: WeightedIndex<f64>,
}

impl FeatureModel {
    /// Mean cost of one request on `model`, in dollars: for allocating weighted
    /// samples only, never summed as money.
    fn mean_dollars(&self, model: usize) -> f64 {
        let m = &MODELS[model];
        (m.input_picos_per_token as f64 * self.input.mean
            + m.output_picos_per_token as f64 * self.output.mean)
            / 1e12
    }
}

#[derive(Debug, Clone)]
struct User {
    name: String,
    tenant: usize,
    region: usize,
}

#[derive(Debug, Clone)]
struct Spike {
    feature: usize,
    factor: f64,
    from: DateTime<Utc>,
    /// Index into `users` (by Zipf rank).
    user: usize,
    model: usize,
}

/// A drawn request before names are attached.
#[derive(Debug, Clone, Copy)]
struct Draw {
    feature: usize,
    user: usize,
    model: usize,
    input: u64,
    output: u64,
    cost: Money,
}

/// The synthetic event source. See the module documentation.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    base_rate: f64,
    shape: RateShape,
    noise: f64,
    rng: SmallRng,
    features: Vec<FeatureModel>,
    /// By Zipf rank: `users[0]` is the most active user.
    users: Vec<User>,
    zipf: Zipf<f64>,
    spike: Option<Spike>,
    id_key: u64,
    issued: u64,
    /// Per-feature day noise of one day: (day index, multipliers).
    day_noise: Option<(i64, Vec<f64>)>,
}

fn check_rate(what: &'static str, value: f64) -> Result<f64, SimError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(SimError::InvalidRate { what, value })
    }
}

fn known_features() -> String {
    catalog::feature_names().collect::<Vec<_>>().join(", ")
}

/// Poisson(lambda) as an integer; 0 for lambda <= 0.
fn poisson(rng: &mut SmallRng, lambda: f64) -> u64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0;
    }
    match Poisson::new(lambda) {
        Ok(p) => {
            let x: f64 = p.sample(rng);
            x as u64
        }
        Err(_) => lambda.round() as u64,
    }
}

/// Binomial(n, p) as an integer.
fn binomial(rng: &mut SmallRng, n: u64, p: f64) -> u64 {
    match Binomial::new(n, p) {
        Ok(b) => b.sample(rng),
        Err(_) => (n as f64 * p).round() as u64,
    }
}

/// A multiplier coprime with `n`, for a fixed permutation of user numbers.
fn coprime_step(n: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    [7919u64, 7907, 7901, 104_729, 1]
        .into_iter()
        .find(|&a| gcd(a, n) == 1)
        .unwrap_or(1)
}

impl Generator {
    pub fn new(cfg: GeneratorConfig) -> Result<Generator, SimError> {
        if cfg.users == 0 || cfg.users > MAX_USERS {
            return Err(SimError::Users(cfg.users));
        }
        let base_rate = check_rate("the event rate", cfg.base_rate)?;
        let noise = check_rate("the noise scale", cfg.noise)?;
        let total_share: f64 = FEATURES.iter().map(|f| f.share).sum();
        let mut features = Vec::with_capacity(FEATURES.len());
        for f in FEATURES {
            let bad = || SimError::InvalidCatalog(f.name);
            let mix: Vec<(usize, f64)> = f
                .models
                .iter()
                .filter_map(|(m, w)| catalog::model_index(m).map(|i| (i, *w)))
                .collect();
            let weight_total: f64 = mix.iter().map(|(_, w)| w).sum();
            features.push(FeatureModel {
                share: f.share / total_share,
                input: TokenDist::new(f.input_median, f.input_sigma, MAX_INPUT_TOKENS)
                    .ok_or_else(bad)?,
                output: TokenDist::new(f.output_median, f.output_sigma, MAX_OUTPUT_TOKENS)
                    .ok_or_else(bad)?,
                pick_model: WeightedIndex::new(mix.iter().map(|(_, w)| *w)).map_err(|_| bad())?,
                mix: mix.iter().map(|(m, w)| (*m, w / weight_total)).collect(),
            });
        }

        // Users: numbered 1..=n, Zipf rank r -> a fixed permutation of numbers, so the
        // busiest user is not "user_0001". Tenant and region depend on the number
        // only (not the seed): the same user is in the same tenant in every run.
        let n = cfg.users as u64;
        let width = n.to_string().len().max(4);
        let step = coprime_step(n);
        let tenant_total: f64 = TENANTS.iter().map(|t| t.weight).sum();
        let users = (0..n)
            .map(|rank| {
                let number = (rank * step + 17) % n + 1;
                let h = mix64(number ^ 0x7E4A_4E75);
                let u = (h >> 11) as f64 / (1u64 << 53) as f64 * tenant_total;
                let mut acc = 0.0;
                let mut tenant = TENANTS.len() - 1;
                for (i, t) in TENANTS.iter().enumerate() {
                    acc += t.weight;
                    if u < acc {
                        tenant = i;
                        break;
                    }
                }
                let h2 = mix64(h);
                let home = TENANTS[tenant].home_region;
                let v = (h2 >> 11) as f64 / (1u64 << 53) as f64;
                let region = if v < HOME_REGION_SHARE || REGIONS.len() < 2 {
                    home
                } else {
                    let others: Vec<usize> = (0..REGIONS.len()).filter(|&r| r != home).collect();
                    others[(mix64(h2) % others.len() as u64) as usize]
                };
                User {
                    name: format!("user_{number:0width$}"),
                    tenant,
                    region,
                }
            })
            .collect::<Vec<_>>();
        let zipf = Zipf::new(n as f64, USER_ZIPF_S).map_err(|_| SimError::Users(cfg.users))?;

        let spike = match cfg.spike {
            None => None,
            Some(s) => {
                let feature =
                    catalog::feature_index(&s.feature).ok_or_else(|| SimError::UnknownFeature {
                        name: s.feature.clone(),
                        known: known_features(),
                    })?;
                if !(s.factor.is_finite() && s.factor > 0.0) {
                    return Err(SimError::InvalidFactor(s.factor));
                }
                // A moderately active user (rank 2%-10%), so the loop stands out
                // against the user's own history; the feature's priciest model.
                let mut pick = SmallRng::seed_from_u64(mix64(cfg.seed ^ 0x5B1C_E5E1));
                let lo = (n / 50) as usize;
                let hi = ((n / 10) as usize).max(lo + 1).min(n as usize);
                let user = if lo < hi {
                    pick.random_range(lo..hi)
                } else {
                    0
                };
                let f = &FEATURES[feature];
                let model = f
                    .models
                    .iter()
                    .filter_map(|(m, _)| catalog::model_index(m))
                    .max_by_key(|&m| {
                        MODELS[m].output_picos_per_token + MODELS[m].input_picos_per_token
                    })
                    .unwrap_or(0);
                Some(Spike {
                    feature,
                    factor: s.factor,
                    from: s.from,
                    user,
                    model,
                })
            }
        };

        Ok(Generator {
            seed: cfg.seed,
            base_rate,
            shape: cfg.shape,
            noise,
            rng: SmallRng::seed_from_u64(cfg.seed),
            features,
            users,
            zipf,
            spike,
            id_key: mix64(cfg.seed ^ mix64(cfg.run_id ^ 0x1D50_F1D5)),
            issued: 0,
            day_noise: None,
        })
    }

    /// Changes the base rate from now on (events already drawn are unaffected).
    pub fn set_base_rate(&mut self, events_per_s: f64) -> Result<(), SimError> {
        self.base_rate = check_rate("the event rate", events_per_s)?;
        Ok(())
    }

    pub fn set_shape(&mut self, shape: RateShape) {
        self.shape = shape;
    }

    pub fn base_rate(&self) -> f64 {
        self.base_rate
    }

    /// Expected cost of one request of the normal traffic mix, in dollars: an
    /// estimate for budgets and labels, never summed as money.
    pub fn mean_cost_per_request(&self) -> f64 {
        self.features
            .iter()
            .map(|f| {
                f.share
                    * f.mix
                        .iter()
                        .map(|&(m, p)| p * f.mean_dollars(m))
                        .sum::<f64>()
            })
            .sum()
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The name of the user of Zipf rank `rank` (0 = busiest).
    pub fn user_name(&self, rank: usize) -> Option<&str> {
        self.users.get(rank).map(|u| u.name.as_str())
    }

    pub fn spike_target(&self) -> Option<SpikeTarget<'_>> {
        self.spike.as_ref().map(|s| SpikeTarget {
            feature: FEATURES[s.feature].name,
            user: &self.users[s.user].name,
            model: MODELS[s.model].name,
            factor: s.factor,
            from: s.from,
        })
    }

    /// Per-feature multiplier of the seasonal shape at `t` (rhythm and noise).
    fn feature_shape(&mut self, t: DateTime<Utc>, out: &mut Vec<f64>) {
        out.clear();
        match self.shape {
            RateShape::Flat => out.extend(self.features.iter().map(|_| 1.0)),
            RateShape::Seasonal => {
                let day = day_index(t);
                if self.day_noise.as_ref().is_none_or(|(d, _)| *d != day) {
                    let d = noise(self.seed, NOISE_DAY, day, DAY_NOISE_SIGMA, self.noise);
                    let per_feature = (0..self.features.len())
                        .map(|f| {
                            d * noise(
                                self.seed,
                                NOISE_FEATURE_DAY,
                                day * 64 + f as i64,
                                FEATURE_DAY_NOISE_SIGMA,
                                self.noise,
                            )
                        })
                        .collect();
                    self.day_noise = Some((day, per_feature));
                }
                let common = rhythm(t)
                    * noise(
                        self.seed,
                        NOISE_HOUR,
                        hour_index(t),
                        HOUR_NOISE_SIGMA,
                        self.noise,
                    );
                if let Some((_, per_feature)) = &self.day_noise {
                    out.extend(per_feature.iter().map(|m| m * common));
                }
            }
        }
    }

    /// Events per second at `t` by class: one entry per feature (its normal traffic,
    /// scaled by the spike factor when that is below 1), then the runaway loop.
    fn class_rates(&mut self, t: DateTime<Utc>) -> Vec<f64> {
        let mut shape = Vec::with_capacity(self.features.len() + 1);
        self.feature_shape(t, &mut shape);
        let mut rates: Vec<f64> = self
            .features
            .iter()
            .zip(&shape)
            .map(|(f, s)| self.base_rate * f.share * s)
            .collect();
        let mut runaway = 0.0;
        if let Some(s) = self.spike.as_ref().filter(|s| t >= s.from) {
            let normal = rates[s.feature];
            if s.factor >= 1.0 {
                runaway = normal * (s.factor - 1.0);
            } else {
                rates[s.feature] = normal * s.factor;
            }
        }
        rates.push(runaway);
        rates
    }

    /// Expected events per second at `t`, spike included.
    pub fn rate_at(&mut self, t: DateTime<Utc>) -> f64 {
        self.class_rates(t).iter().sum()
    }

    /// Expected events per second at `t` without any spike.
    pub fn normal_rate_at(&mut self, t: DateTime<Utc>) -> f64 {
        let mut shape = Vec::with_capacity(self.features.len());
        self.feature_shape(t, &mut shape);
        self.features
            .iter()
            .zip(&shape)
            .map(|(f, s)| self.base_rate * f.share * s)
            .sum()
    }

    fn draw(&mut self, class: usize) -> Draw {
        let (feature, user, model) = match &self.spike {
            Some(s) if class == self.features.len() => (s.feature, s.user, s.model),
            _ => {
                let feature = class.min(self.features.len() - 1);
                let f = &self.features[feature];
                let model = f.mix[f.pick_model.sample(&mut self.rng)].0;
                let rank: f64 = self.zipf.sample(&mut self.rng);
                let user = (rank as usize).clamp(1, self.users.len()) - 1;
                (feature, user, model)
            }
        };
        let f = &self.features[feature];
        let input = f.input.one(&mut self.rng);
        let output = f.output.one(&mut self.rng);
        let cost = request_cost(&MODELS[model], input, output);
        Draw {
            feature,
            user,
            model,
            input,
            output,
            cost,
        }
    }

    fn next_request_id(&mut self) -> String {
        let id = mix64(self.id_key ^ self.issued);
        self.issued += 1;
        format!("req_{id:016x}")
    }

    fn event(&mut self, class: usize, at: DateTime<Utc>) -> SimEvent {
        let d = self.draw(class);
        let user = &self.users[d.user];
        let (name, tenant, region) = (user.name.clone(), user.tenant, user.region);
        SimEvent {
            at,
            feature: Cow::Borrowed(FEATURES[d.feature].name),
            user: name,
            model: Cow::Borrowed(MODELS[d.model].name),
            tenant: Cow::Borrowed(TENANTS[tenant].name),
            region: Cow::Borrowed(REGIONS[region]),
            input_tokens: d.input,
            output_tokens: d.output,
            cost: d.cost,
            request_id: self.next_request_id(),
        }
    }

    /// One request at `at`, drawn from the traffic mix at that instant.
    pub fn sample_event(&mut self, at: DateTime<Utc>) -> SimEvent {
        let rates = self.class_rates(at);
        let class = match WeightedIndex::new(&rates) {
            Ok(w) => w.sample(&mut self.rng),
            // No traffic at all at `at`: draw from the catalog's normal mix.
            Err(_) => {
                let shares: Vec<f64> = self.features.iter().map(|f| f.share).collect();
                WeightedIndex::new(&shares)
                    .map(|w| w.sample(&mut self.rng))
                    .unwrap_or(0)
            }
        };
        self.event(class, at)
    }

    /// Every event of `[from, to)` in time order: Poisson arrivals following the
    /// rate shape (piecewise constant per minute), with microsecond timestamps.
    pub fn events_between(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Events<'_> {
        let from = from.trunc_subsecs(6);
        Events {
            generator: self,
            cursor: from,
            to: to.trunc_subsecs(6),
            seg_start: from,
            offsets: Vec::new(),
            next: 0,
            pick: None,
        }
    }

    /// Facts standing for all the traffic of `[from, to)`, all stamped `at` (the
    /// start of the store bucket they belong to). The number of requests per feature
    /// and model is drawn exactly (Poisson of the integrated rate, then the model
    /// mix); each stratum is then represented by a few weighted samples (about
    /// `max_samples` in all, allocated half by requests and half by expected cost),
    /// each standing for `k` requests of one user, with token totals distributed as
    /// sums of `k` requests and the exact cost of those tokens. Totals, their
    /// hour-to-hour variance, cost per request and the skew over users and models
    /// stay realistic; only the number of distinct users per bucket is lower than in
    /// reality.
    pub fn weighted_facts(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        at: DateTime<Utc>,
        max_samples: usize,
    ) -> Vec<Fact> {
        let classes = self.features.len() + 1;
        let mut lambda = vec![0.0f64; classes];
        let mut t = from;
        while t < to {
            let next = Calendar::minute_start(Calendar::minute_index(t) + 1).min(to);
            let next = match &self.spike {
                Some(s) if t < s.from && s.from < next => s.from,
                _ => next,
            };
            let secs = (next - t).num_microseconds().unwrap_or(0) as f64 / 1e6;
            let mid = t + (next - t) / 2;
            for (l, r) in lambda.iter_mut().zip(self.class_rates(mid)) {
                *l += r * secs;
            }
            t = next;
        }
        // Requests per (class, model), drawn exactly: Poisson per class, then the
        // model mix as a multinomial split (as request-by-request choices would be).
        let n_features = self.features.len();
        let mut strata: Vec<(usize, usize, u64, f64)> = Vec::new(); // class, model, requests, mean cost
        for (class, &l) in lambda.iter().enumerate() {
            let n = poisson(&mut self.rng, l);
            if n == 0 {
                continue;
            }
            match &self.spike {
                Some(sp) if class == n_features => {
                    let cost = self.features[sp.feature].mean_dollars(sp.model);
                    strata.push((class, sp.model, n, cost));
                }
                _ => {
                    let f = &self.features[class];
                    let (mut left, mut p_left) = (n, 1.0f64);
                    for (i, &(model, p)) in f.mix.iter().enumerate() {
                        let k = if i + 1 == f.mix.len() || p_left <= 0.0 {
                            left
                        } else {
                            binomial(&mut self.rng, left, (p / p_left).clamp(0.0, 1.0))
                        };
                        if k > 0 {
                            strata.push((class, model, k, f.mean_dollars(model)));
                        }
                        left -= k;
                        p_left -= p;
                    }
                }
            }
        }
        let total: u64 = strata.iter().map(|s| s.2).sum();
        let mut facts = Vec::new();
        if total == 0 {
            return facts;
        }
        // Samples per stratum: half by requests, half by expected cost, so that costly
        // rare features are not a handful of samples.
        let total_cost: f64 = strata.iter().map(|s| s.2 as f64 * s.3).sum();
        let budget = max_samples.max(1) as f64;
        for (class, model, n, mean_cost) in strata {
            let by_count = n as f64 / total as f64;
            let by_cost = if total_cost > 0.0 {
                n as f64 * mean_cost / total_cost
            } else {
                by_count
            };
            let samples = ((budget * (by_count + by_cost) / 2.0).ceil() as u64).clamp(1, n);
            let (base, extra) = (n / samples, n % samples);
            for i in 0..samples {
                let k = base + u64::from(i < extra);
                facts.push(self.weighted_fact(class, model, k, at));
            }
        }
        facts
    }

    /// `k` requests of one class on one model, given to one user: token totals are
    /// distributed as sums of `k` requests, the cost is exact for those totals.
    fn weighted_fact(&mut self, class: usize, model: usize, k: u64, at: DateTime<Utc>) -> Fact {
        let (feature, user) = match &self.spike {
            Some(s) if class == self.features.len() => (s.feature, s.user),
            _ => {
                let rank: f64 = self.zipf.sample(&mut self.rng);
                (
                    class.min(self.features.len() - 1),
                    (rank as usize).clamp(1, self.users.len()) - 1,
                )
            }
        };
        let f = &self.features[feature];
        let input = f.input.sum(k, &mut self.rng);
        let output = f.output.sum(k, &mut self.rng);
        let u = &self.users[user];
        Fact {
            at,
            names: [
                FEATURES[feature].name.to_string(),
                u.name.clone(),
                MODELS[model].name.to_string(),
                TENANTS[u.tenant].name.to_string(),
                REGIONS[u.region].to_string(),
            ],
            agg: Agg {
                cost: request_cost(&MODELS[model], input, output),
                requests: k,
                input_tokens: input,
                output_tokens: output,
                computed: 0,
            },
        }
    }
}

/// The events of [`Generator::events_between`].
pub struct Events<'a> {
    generator: &'a mut Generator,
    /// Start of the next segment to draw.
    cursor: DateTime<Utc>,
    to: DateTime<Utc>,
    seg_start: DateTime<Utc>,
    /// Arrival offsets in the current segment, microseconds, ascending.
    offsets: Vec<i64>,
    next: usize,
    pick: Option<WeightedIndex<f64>>,
}

impl Events<'_> {
    /// Draws the arrivals of the next segment: up to the next minute boundary, the
    /// end, or the spike's start, whichever comes first.
    fn fill(&mut self) {
        let start = self.cursor;
        let mut end = Calendar::minute_start(Calendar::minute_index(start) + 1).min(self.to);
        if let Some(s) = self
            .generator
            .spike
            .as_ref()
            .filter(|s| start < s.from && s.from < end)
        {
            end = s.from;
        }
        self.cursor = end;
        self.seg_start = start;
        self.offsets.clear();
        self.next = 0;
        let span = (end - start).num_microseconds().unwrap_or(0);
        if span <= 0 {
            return;
        }
        let rates = self
            .generator
            .class_rates(start + Duration::microseconds(span / 2));
        let total: f64 = rates.iter().sum();
        let n = poisson(&mut self.generator.rng, total * span as f64 / 1e6);
        if n == 0 {
            return;
        }
        self.pick = WeightedIndex::new(&rates).ok();
        if self.pick.is_none() {
            return;
        }
        let rng = &mut self.generator.rng;
        self.offsets
            .extend((0..n).map(|_| rng.random_range(0..span)));
        self.offsets.sort_unstable();
    }
}

impl Iterator for Events<'_> {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        loop {
            if let Some(&off) = self.offsets.get(self.next) {
                self.next += 1;
                let at = self.seg_start + Duration::microseconds(off);
                let class = match &self.pick {
                    Some(p) => p.sample(&mut self.generator.rng),
                    None => 0,
                };
                return Some(self.generator.event(class, at));
            }
            if self.cursor >= self.to {
                return None;
            }
            self.fill();
        }
    }
}

#[cfg(test)]
mod tests;
