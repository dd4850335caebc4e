----------------------------- MODULE ClassicVC -----------------------------
(***************************************************************************)
(* Dynamo's original scheme (DeCandia et al., SOSP 2007, section 4.4):     *)
(* every version carries its own vector clock, and the coordinator s of a  *)
(* put makes the new version's clock by incrementing s's entry of the      *)
(* client's context.  The interface is the one of DVV.tla, so that         *)
(* Shoal.tla can run either scheme; a sibling's id is its vector clock.    *)
(*                                                                         *)
(* Two clients that write through the same coordinator with the same       *)
(* context obtain comparable clocks for concurrent values, and the later   *)
(* one silently replaces the earlier: the lost update that DVVSet fixes.   *)
(***************************************************************************)
EXTENDS Naturals

CONSTANT Servers

Zero == [s \in Servers |-> 0]

Max2(a, b) == IF a >= b THEN a ELSE b

Leq(f, g) == \A s \in Servers : f[s] <= g[s]

Less(f, g) == Leq(f, g) /\ f # g

(* A context covers a version when it dominates the version's clock.       *)
Covers(ctx, vc) == Leq(vc, ctx)

JoinAll(sibs) ==
    [s \in Servers |-> IF sibs = {} THEN 0
                       ELSE CHOOSE n \in {x.id[s] : x \in sibs} :
                              \A y \in sibs : y.id[s] <= n]

Mk(sibs) == [vv |-> JoinAll(sibs), sibs |-> sibs]

Empty == Mk({})

(* Reconciliation keeps every version that no other version's clock        *)
(* strictly dominates (versions are told apart by their values).           *)
Prune(sibs) == {x \in sibs : ~\E y \in sibs : Less(x.id, y.id)}

Sync(a, b) == Mk(Prune(a.sibs \cup b.sibs))

(* The coordinator s sets its entry of the client's context to one more    *)
(* than the largest it has stored for the key (Riak's per-vnode clocks);   *)
(* the new version then replaces every stored version it dominates.        *)
Update(ctx, S, s, v) ==
    LET n  == Max2(ctx[s], S.vv[s]) + 1
        vc == [ctx EXCEPT ![s] = n]
    IN  Mk(Prune(S.sibs \cup {[id |-> vc, val |-> v]}))

(* The context of a read is the merge of the clocks of what was read.      *)
Join(S) == S.vv

Values(S) == {x.val : x \in S.sibs}
=============================================================================
