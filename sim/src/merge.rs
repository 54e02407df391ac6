//! Merging shards: the directories of `sim sweep --shard K/N` runs, combined into one sweep.
//!
//! [`merge`] checks that the parts belong together (same servocell version, same scenarios at
//! the same paths with the same text (SHA-256), same seed range, the same shard count), that together they are every shard
//! exactly once (a partial merge would hide seeds; a whole, unsharded sweep needs no merge),
//! and that no (scenario, seed) appears twice; then it sorts the results by (scenario, seed) and
//! sums the coverage. Since a sweep writes its results in the same order through the same
//! serializer, the merged `results.jsonl` equals the unsharded sweep's byte for byte.
//!
//! It does not run anything and does not read scenario files.

use std::collections::BTreeSet;

use crate::coverage::Coverage;
use crate::sweep::{Manifest, Sweep, sort_results};

/// Parts that do not make one sweep.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("part {index} differs from part 0 in {what}: {this} against {first}")]
    Mismatch {
        index: usize,
        what: &'static str,
        this: String,
        first: String,
    },
    #[error(
        "part {index} is a whole sweep, not a shard: merge shards of one sweep, or use the whole sweep as it is"
    )]
    NotAShard { index: usize },
    #[error("shard {shard} is given twice")]
    ShardTwice { shard: String },
    #[error("shards missing: {missing} (of {count}); a merge of a partial sweep would hide seeds")]
    ShardsMissing { missing: String, count: u64 },
    #[error("scenario {scenario} seed {seed} appears in more than one part")]
    SeedTwice { scenario: String, seed: u64 },
}

/// Combines the shards of one sweep into the whole sweep.
pub fn merge(parts: Vec<Sweep>) -> Result<Sweep, MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?.manifest.clone();
    let mut shards = BTreeSet::new();
    for (index, part) in parts.iter().enumerate() {
        let m = &part.manifest;
        check_same(index, "servocell version", &m.version, &first.version)?;
        check_same(
            index,
            "scenarios",
            &scenario_list(m),
            &scenario_list(&first),
        )?;
        check_same(
            index,
            "seed range",
            &format!("{}..{}", m.seeds_start, m.seeds_end),
            &format!("{}..{}", first.seeds_start, first.seeds_end),
        )?;
        let shard = m.shard.ok_or(MergeError::NotAShard { index })?;
        let count = first.shard.ok_or(MergeError::NotAShard { index: 0 })?.count;
        check_same(
            index,
            "shard count",
            &shard.count.to_string(),
            &count.to_string(),
        )?;
        if !shards.insert(shard.index) {
            return Err(MergeError::ShardTwice {
                shard: shard.to_string(),
            });
        }
    }
    let count = first.shard.expect("checked above").count;
    let missing: Vec<String> = (0..count)
        .filter(|k| !shards.contains(k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::ShardsMissing {
            missing: missing.join(", "),
            count,
        });
    }

    let mut results = Vec::new();
    let mut coverage = Coverage::default();
    for part in parts {
        results.extend(part.results);
        coverage.merge(&part.coverage);
    }
    sort_results(&mut results);
    if let Some(pair) = results
        .windows(2)
        .find(|w| w[0].scenario == w[1].scenario && w[0].seed == w[1].seed)
    {
        return Err(MergeError::SeedTwice {
            scenario: pair[0].scenario.clone(),
            seed: pair[0].seed,
        });
    }
    Ok(Sweep {
        manifest: Manifest {
            shard: None,
            ..first
        },
        results,
        coverage,
    })
}

fn scenario_list(m: &Manifest) -> String {
    m.scenarios
        .iter()
        .map(|s| format!("{} ({}, SHA-256 {})", s.name, s.path, s.sha256))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_same(index: usize, what: &'static str, this: &str, first: &str) -> Result<(), MergeError> {
    if this == first {
        return Ok(());
    }
    Err(MergeError::Mismatch {
        index,
        what,
        this: this.to_owned(),
        first: first.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{ManifestScenario, SeedResult, Shard};

    fn part(index: u64, count: u64, seeds: &[u64]) -> Sweep {
        Sweep {
            manifest: Manifest {
                version: "0.1.0".into(),
                scenarios: vec![ManifestScenario {
                    name: "s".into(),
                    path: "s.toml".into(),
                    sha256: "0".repeat(64),
                }],
                seeds_start: 0,
                seeds_end: 6,
                shard: Some(Shard { index, count }),
            },
            results: seeds
                .iter()
                .map(|seed| SeedResult {
                    scenario: "s".into(),
                    seed: *seed,
                    verdict: "pass".into(),
                    failed_oracles: vec![],
                    trace_hash: format!("{seed:032x}"),
                    simulated_s: 1.0,
                    path: "s.toml".into(),
                    faults: 0,
                    swarm_kinds: None,
                    panic: None,
                })
                .collect(),
            coverage: Coverage::default(),
        }
    }

    // Goal: complete shards merge into sorted results whatever order they come in; a missing,
    // repeated or foreign shard, or one whose scenario text differs, is refused with a message
    // that names it.
    #[test]
    fn merges_complete_shards_only() {
        let merged = merge(vec![part(1, 2, &[1, 3, 5]), part(0, 2, &[0, 2, 4])]).expect("ok");
        let seeds: Vec<u64> = merged.results.iter().map(|r| r.seed).collect();
        assert_eq!(seeds, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(merged.manifest.shard, None);

        assert_eq!(
            merge(vec![part(0, 3, &[0, 3])]),
            Err(MergeError::ShardsMissing {
                missing: "1/3, 2/3".into(),
                count: 3
            })
        );
        assert_eq!(
            merge(vec![part(0, 2, &[0]), part(0, 2, &[2])]),
            Err(MergeError::ShardTwice {
                shard: "0/2".into()
            })
        );
        assert!(matches!(
            merge(vec![part(0, 2, &[0]), part(1, 3, &[1])]),
            Err(MergeError::Mismatch {
                what: "shard count",
                ..
            })
        ));
        assert_eq!(
            merge(vec![part(0, 2, &[0, 2]), part(1, 2, &[2])]),
            Err(MergeError::SeedTwice {
                scenario: "s".into(),
                seed: 2
            })
        );
        let mut edited = part(1, 2, &[1]);
        edited.manifest.scenarios[0].sha256 = "1".repeat(64);
        assert!(matches!(
            merge(vec![part(0, 2, &[0]), edited]),
            Err(MergeError::Mismatch {
                what: "scenarios",
                ..
            })
        ));
        let mut whole = part(0, 1, &[0]);
        whole.manifest.shard = None;
        assert_eq!(merge(vec![whole]), Err(MergeError::NotAShard { index: 0 }));
        assert_eq!(merge(vec![]), Err(MergeError::Empty));
    }
}
