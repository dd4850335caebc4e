//! Sloppy quorum (Dynamo §4.6): where a request's copies go when replicas are unreachable.
//!
//! A key's *primaries* are its preference list. A request goes to every primary the failure
//! detector believes alive; in place of each one it believes down, a *fallback* — the next
//! healthy node of the extended preference list that is not already a target — receives the
//! copy with a hint naming the primary it stands in for, and hands it over once that primary
//! is back (see [`crate::core::handoff`]). So a write is acknowledged as long as `W` nodes of
//! the whole ring are reachable, and with `R + W > N` a read still meets every write unless
//! fallbacks were involved — which is why Riak's `pw`/`pr` exist: they count only primaries.
//! With sloppy quorum switched off, requests go to the primaries only.

use crate::core::Env;
use crate::ids::NodeId;

/// One copy a request sends: to a primary, or to a fallback holding it for `hint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The node that receives the copy.
    pub(crate) node: NodeId,
    /// The primary it stands in for, when the node is a fallback.
    pub(crate) hint: Option<NodeId>,
}

/// The targets of a request on `key` whose primaries are `primaries`: every healthy primary,
/// and a healthy fallback for each other one when sloppy quorum is on — or the primary itself
/// when no fallback is healthy either (it may yet answer). This node counts as healthy; when
/// it is not a primary it is the first fallback considered (a coordinator that stands in
/// keeps the copy it makes).
pub(crate) fn choose<S>(env: &Env<S>, key: &[u8], primaries: &[NodeId]) -> Vec<Target> {
    let me = env.id;
    let healthy = |n: NodeId| n == me || env.detector.healthy(n);
    let mut targets: Vec<Target> = Vec::with_capacity(primaries.len());
    let mut fallbacks = fallback_order(env, key, primaries).into_iter();
    for &p in primaries {
        if healthy(p) || !env.config.sloppy_quorum {
            targets.push(Target {
                node: p,
                hint: None,
            });
        } else if let Some(f) = fallbacks.find(|f| healthy(*f)) {
            targets.push(Target {
                node: f,
                hint: Some(p),
            });
        } else {
            targets.push(Target {
                node: p,
                hint: None,
            });
        }
    }
    targets
}

/// A fallback for primary `owner`, not among `taken`: the next healthy node of the extended
/// preference list.
pub(crate) fn stand_in<S>(
    env: &Env<S>,
    key: &[u8],
    primaries: &[NodeId],
    taken: &[Target],
) -> Option<NodeId> {
    let me = env.id;
    fallback_order(env, key, primaries)
        .into_iter()
        .filter(|f| !taken.iter().any(|t| t.node == *f))
        .find(|f| *f == me || env.detector.healthy(*f))
}

/// The non-primary nodes in extended-preference-list order, this node first if it is one.
fn fallback_order<S>(env: &Env<S>, key: &[u8], primaries: &[NodeId]) -> Vec<NodeId> {
    let me = env.id;
    let mut order: Vec<NodeId> = env
        .ring
        .extended_list(env.ring.partition_of(key), env.config.n)
        .into_iter()
        .filter(|n| !primaries.contains(n))
        .collect();
    if let Some(i) = order.iter().position(|n| *n == me) {
        order.remove(i);
        order.insert(0, me);
    }
    order
}
