----------------------------- MODULE ClassicVC -----------------------------
(***************************************************************************)
(* Dynamo's original scheme (DeCandia et al., SOSP 2007, section 4.4):     *)
(* every version carries its own vector clock, and the coordinator s of a  *)
(* put makes the new version's clock by incrementing s's entry of the      *)
(* client's context.  The interface is the one of DVV.tla, so that         *)
(* Shoal.tla can run either scheme; a sibling's id is its vector clock.    *)
(*                                                                         *)
(* Two clients that write through the same coordinator with the same       *)
(* context obtain the same clock for different values, and the later one   *)
(* silently replaces the earlier: the lost update that DVVSet fixes.       *)
(***************************************************************************)
EXTENDS Naturals

CONSTANT Servers

Zero == [s \in Servers |-> 0]

Max2(a, b) == IF a >= b THEN a ELSE b

Leq(f, g) == \A s \in Servers : f[s] <= g[s]

Less(f, g) == Leq(f, g) /\ f # g

(* A context covers a version when it dominates the version's clock. *)
Covers(ctx, vc) == Leq(vc, ctx)

JoinAll(sibs) ==
    [s \in Servers |-> IF sibs = {} THEN 0
                       ELSE CHOOSE n \in {x.id[s] : x \in sibs} :
                              \A y \in sibs : y.id[s] <= n]

Mk(sibs) == [vv |-> JoinAll(sibs), sibs |-> sibs]

Empty == Mk({})

(* Reconciliation: a version is dropped when the other side has a         *)
(* different version whose clock is at least as large; on equal clocks   *)
(* the incoming version (b) wins, as a coordinator's new version does.    *)
Sync(a, b) ==
    Mk({x \in a.sibs : ~\E y \in b.sibs : y # x /\ Leq(x.id, y.id)}
       \cup {y \in b.sibs : ~\E x \in a.sibs : Less(y.id, x.id)})

(* The coordinator s increments its own entry of the client's context; the *)
(* new version replaces every stored version it dominates or equals.       *)
Update(ctx, S, s, v) ==
    LET vc == [ctx EXCEPT ![s] = ctx[s] + 1]
    IN  Sync(S, Mk({[id |-> vc, val |-> v]}))

(* The context of a read is the merge of the clocks of what was read. *)
Join(S) == S.vv

Values(S) == {x.val : x \in S.sibs}
=============================================================================
