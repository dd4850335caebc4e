-------------------------------- MODULE DVV --------------------------------
(***************************************************************************)
(* Dotted version vector sets (Almeida, Baquero, Goncalves, Preguica,      *)
(* Fonte, "Scalable and Accurate Causality Tracking for Eventually         *)
(* Consistent Stores", DAIS 2014), read as "causal history plus dotted     *)
(* siblings".                                                              *)
(*                                                                         *)
(* The reference library keeps, per node id, an entry (id, n, [values]):   *)
(* the node's events 1..n are in the causal history and the listed values  *)
(* carry the dots (id, n), (id, n-1), ...  Here the same information is a  *)
(* record                                                                  *)
(*     [vv |-> version vector, sibs |-> set of [id |-> dot, val |-> v]]    *)
(* where vv[s] = n says that the dots (s, 1) .. (s, n) are in the history  *)
(* and every sibling's dot is one of them.  The operators are the          *)
(* library's sync, update, join and values.                                *)
(***************************************************************************)
EXTENDS Naturals

CONSTANT Servers

Zero == [s \in Servers |-> 0]

Max2(a, b) == IF a >= b THEN a ELSE b

VVMax(f, g) == [s \in Servers |-> Max2(f[s], g[s])]

(* A context (version vector) covers a dot (s, n) when n <= ctx[s].        *)
Covers(ctx, dot) == ctx[dot[1]] >= dot[2]

Empty == [vv |-> Zero, sibs |-> {}]

(* sync(A, B): union of the histories; a sibling survives unless the other *)
(* clock has seen its dot and no longer holds it (it was superseded).      *)
Sync(a, b) ==
    [vv   |-> VVMax(a.vv, b.vv),
     sibs |-> {x \in a.sibs : x \in b.sibs \/ ~Covers(b.vv, x.id)}
              \cup {y \in b.sibs : y \in a.sibs \/ ~Covers(a.vv, y.id)}]

(* update(ctx, S, s): the coordinator s stores value v written with the    *)
(* client's context ctx on top of its own clock S.  The new value gets the *)
(* next dot of s; exactly the siblings whose dots ctx covers are dropped,  *)
(* the others stay as concurrent siblings.                                 *)
Update(ctx, S, s, v) ==
    LET h   == VVMax(ctx, S.vv)
        dot == <<s, h[s] + 1>>
    IN  [vv   |-> [h EXCEPT ![s] = dot[2]],
         sibs |-> {x \in S.sibs : ~Covers(ctx, x.id)}
                  \cup {[id |-> dot, val |-> v]}]

(* join(S): the context handed to a client that read S.                    *)
Join(S) == S.vv

Values(S) == {x.val : x \in S.sibs}
=============================================================================
