------------------------------- MODULE Shoal -------------------------------
(***************************************************************************)
(* shoal's replication protocol for one key, at the level of the           *)
(* stateright model in model/: replicas holding a DVVSet, quorum put and   *)
(* get, sloppy quorum with hinted handoff, read repair, anti-entropy,      *)
(* deletes with tombstone reaping, crashes that keep durable state, and a  *)
(* network that delays, reorders and loses messages.                       *)
(*                                                                         *)
(* Each client writes once (a value, or a tombstone if it is one of the    *)
(* Deleters), optionally reading first (its put then carries the context   *)
(* it read) and optionally reading again once the put was acknowledged.    *)
(* With Classic = TRUE the clocks are Dynamo's per-coordinator vector      *)
(* clocks instead of DVVSets, and NoLostAck fails.                         *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets, TLC

CONSTANTS
    PrefList,     \* the key's preference list: its N primary replicas
    Fallbacks,    \* the next nodes on the ring, used by sloppy quorum
    Clients,      \* each client writes once
    Deleters,     \* the clients whose write is a delete (a tombstone)
    R, W,         \* read and write quorums
    Reads,        \* subset of {"before", "after"}: when clients may read
    Sloppy,       \* sloppy quorum with hinted handoff
    ReadRepair,   \* read repair after a get
    AntiEntropy,  \* replicas of the key exchange what differs
    Reaping,      \* tombstones are removed once every primary holds them
    MaxCrashes,   \* bound on crashes (durable state survives)
    MaxDrops,     \* bound on lost messages
    Classic       \* TRUE: Dynamo's per-coordinator vector clocks

ASSUME /\ PrefList \cap Fallbacks = {}
       /\ Deleters \subseteq Clients
       /\ R \in 1..Cardinality(PrefList) /\ W \in 1..Cardinality(PrefList)
       /\ Reads \subseteq {"before", "after"}

Servers == PrefList \cup Fallbacks
N == Cardinality(PrefList)
None == "none"

VARIABLES
    store,    \* store[s]: the clock s holds for the key (durable)
    hints,    \* hints[f][p]: what fallback f holds for owner p (durable)
    net,      \* messages in flight: a set, delivery removes one
    up,       \* the servers that are running
    crashes,  \* crashes so far
    drops,    \* messages lost so far
    pc,       \* pc[c]: where client c is in its script
    put,      \* put[c]: client c's put, as its coordinator tracks it
    get,      \* get[c]: client c's current get
    buried    \* ghost: writes removed for good by a tombstone reaping

vars == <<store, hints, net, up, crashes, drops, pc, put, get, buried>>

Perms == Permutations(PrefList)

Quorums == {Q \in SUBSET PrefList : Cardinality(Q) = R}

-----------------------------------------------------------------------------
(* The clock: a DVVSet, or Dynamo's classic vector clocks. *)

DVVClock     == INSTANCE DVV WITH Servers <- Servers
ClassicClock == INSTANCE ClassicVC WITH Servers <- Servers

Zero == [s \in Servers |-> 0]
Empty == IF Classic THEN ClassicClock!Empty ELSE DVVClock!Empty
Sync(a, b) == IF Classic THEN ClassicClock!Sync(a, b) ELSE DVVClock!Sync(a, b)
Update(ctx, S, s, v) ==
    IF Classic THEN ClassicClock!Update(ctx, S, s, v)
               ELSE DVVClock!Update(ctx, S, s, v)
Covers(ctx, id) ==
    IF Classic THEN ClassicClock!Covers(ctx, id) ELSE DVVClock!Covers(ctx, id)
Join(S) == S.vv
Values(S) == {x.val : x \in S.sibs}
IdOf(S, v) == (CHOOSE x \in S.sibs : x.val = v).id

(* Client c's value: the write is a tombstone when c deletes. *)
Val(c) == [writer |-> c, tomb |-> c \in Deleters]

-----------------------------------------------------------------------------
(* Messages.  Replica acknowledgements and read answers are not messages   *)
(* of their own: see README.md, "Abstractions".                            *)

Msg(kind, to, clock, p, hint, from) ==
    [kind |-> kind, to |-> to, clock |-> clock, put |-> p, hint |-> hint,
     from |-> from]
Replicate(c, to, clock, hint) == Msg("replicate", to, clock, c, hint, None)
Repair(to, clock) == Msg("repair", to, clock, None, None, None)
Handoff(f, p, clock) == Msg("handoff", p, clock, None, None, f)

NoPut == [st |-> "none", coord |-> None, ctx |-> Zero, id |-> None, acks |-> {}]
NoGet == [result |-> Empty, mustSee |-> {}]

(* The merge of the clocks of a set of primaries. *)
RECURSIVE MergeAll(_)
MergeAll(Q) ==
    IF Q = {} THEN Empty
    ELSE LET p == CHOOSE q \in Q : TRUE
         IN  Sync(store[p], MergeAll(Q \ {p}))

-----------------------------------------------------------------------------
Init ==
    /\ store = [s \in Servers |-> Empty]
    /\ hints = [f \in Fallbacks |-> [p \in PrefList |-> Empty]]
    /\ net = {}
    /\ up = Servers
    /\ crashes = 0
    /\ drops = 0
    /\ pc = [c \in Clients |-> "idle"]
    /\ put = [c \in Clients |-> NoPut]
    /\ get = [c \in Clients |-> NoGet]
    /\ buried = {}

(* Client c gets the key, before its put or after its put was            *)
(* acknowledged.  The coordinator asks the primaries and      *)
(* returns once R of them (here the set Q) answered: the merge of their    *)
(* clocks.  With read repair it then sends the merge to every replica that *)
(* answered with something else.  The get remembers which puts were        *)
(* acknowledged when it started, for read-your-writes.                     *)
Get(c, Q) ==
    /\ \/ pc[c] = "idle" /\ "before" \in Reads
       \/ pc[c] = "written" /\ "after" \in Reads
    /\ Q \subseteq up
    /\ LET result == MergeAll(Q)
           stale  == {p \in Q : store[p] # result}
       IN  /\ get' = [get EXCEPT ![c] =
                        [result |-> result,
                         mustSee |-> {w \in Clients : put[w].st = "acked"}]]
           /\ net' = IF ReadRepair THEN net \cup {Repair(p, result) : p \in stale}
                                   ELSE net
    /\ pc' = [pc EXCEPT ![c] = IF pc[c] = "idle" THEN "read" ELSE "done"]
    /\ UNCHANGED <<store, hints, up, crashes, drops, put, buried>>

(* Sloppy quorum: primaries that are down get their copy on distinct       *)
(* running fallbacks, each with a hint naming the owner.                   *)
HintPlans(down) ==
    IF ~Sloppy THEN {{}}
    ELSE LET fb == Fallbacks \cap up
             k  == IF Cardinality(down) <= Cardinality(fb)
                   THEN Cardinality(down) ELSE Cardinality(fb)
         IN  {h \in SUBSET (down \X fb) :
                /\ Cardinality(h) = k
                /\ \A x, y \in h : x # y => x[1] # y[1] /\ x[2] # y[2]}

(* Client c's put, coordinated by primary s: s updates its clock with the  *)
(* client's context (empty for a blind write), stores it durably, counts   *)
(* itself as the first of W acknowledgements and replicates the new clock. *)
Put(c, s) ==
    /\ pc[c] \in {"idle", "read"}
    /\ s \in up
    /\ LET ctx  == IF pc[c] = "read" THEN Join(get[c].result) ELSE Zero
           new  == Update(ctx, store[s], s, Val(c))
           live == (PrefList \ {s}) \cap up
           acked == W <= 1
       IN  \E plan \in HintPlans(PrefList \ up) :
           /\ store' = [store EXCEPT ![s] = new]
           /\ net' = net \cup {Replicate(c, p, new, None) : p \in live}
                         \cup {Replicate(c, x[2], new, x[1]) : x \in plan}
           /\ put' = [put EXCEPT ![c] =
                        [st |-> IF acked THEN "acked" ELSE "pending",
                         coord |-> s, ctx |-> ctx, id |-> IdOf(new, Val(c)),
                         acks |-> {s}]]
           /\ pc' = [pc EXCEPT ![c] = IF acked THEN "written" ELSE "writing"]
    /\ UNCHANGED <<hints, up, crashes, drops, get, buried>>

(* The coordinator of put c hears that server t stored it durably. *)
Ack(c, t) ==
    IF put[c].st = "pending" /\ put[c].coord \in up
    THEN LET acks == put[c].acks \cup {t}
             acked == Cardinality(acks) >= W
         IN  /\ put' = [put EXCEPT ![c] = [@ EXCEPT !.acks = acks,
                                             !.st = IF acked THEN "acked" ELSE "pending"]]
             /\ pc' = IF acked THEN [pc EXCEPT ![c] = "written"] ELSE pc
    ELSE UNCHANGED <<put, pc>>

(* A running server receives message m. *)
Deliver(m) ==
    /\ m \in net
    /\ m.to \in up
    /\ net' = net \ {m}
    /\ CASE m.kind = "replicate" /\ m.hint = None ->
              /\ store' = [store EXCEPT ![m.to] = Sync(@, m.clock)]
              /\ Ack(m.put, m.to)
              /\ UNCHANGED hints
         [] m.kind = "replicate" ->
              /\ hints' = [hints EXCEPT ![m.to][m.hint] = Sync(@, m.clock)]
              /\ Ack(m.put, m.to)
              /\ UNCHANGED store
         [] m.kind = "repair" ->
              /\ store' = [store EXCEPT ![m.to] = Sync(@, m.clock)]
              /\ UNCHANGED <<hints, put, pc>>
         [] m.kind = "handoff" ->
              \* the owner stores the hinted data; its acknowledgement lets
              \* the fallback drop the hint, if the fallback is running and
              \* has received nothing more for the owner meanwhile
              /\ store' = [store EXCEPT ![m.to] = Sync(@, m.clock)]
              /\ hints' = IF m.from \in up /\ hints[m.from][m.to] = m.clock
                          THEN [hints EXCEPT ![m.from][m.to] = Empty]
                          ELSE hints
              /\ UNCHANGED <<put, pc>>
    /\ UNCHANGED <<up, crashes, drops, get, buried>>

(* Fallback f hands the hinted data over to its owner p once p is back. *)
StartHandoff(f, p) ==
    /\ f \in up /\ p \in up
    /\ hints[f][p] # Empty
    /\ Handoff(f, p, hints[f][p]) \notin net
    /\ net' = net \cup {Handoff(f, p, hints[f][p])}
    /\ UNCHANGED <<store, hints, up, crashes, drops, pc, put, get, buried>>

(* Anti-entropy: primary b learns from primary a what differs. *)
AntiEntropyStep(a, b) ==
    /\ AntiEntropy
    /\ a # b /\ a \in up /\ b \in up
    /\ Sync(store[b], store[a]) # store[b]
    /\ store' = [store EXCEPT ![b] = Sync(@, store[a])]
    /\ UNCHANGED <<hints, net, up, crashes, drops, pc, put, get, buried>>

(* Everything that may still carry an old version of the key: reads are   *)
(* atomic here, so a read in progress is the repair it sends.             *)
InFlight == {m.clock : m \in net}
            \cup {hints[f][p] : f \in Fallbacks, p \in PrefList}

(* Tombstone reaping: once every primary holds the same clock and all its  *)
(* siblings are tombstones, the key is removed, history included.  The     *)
(* grace period (Riak's delete_mode delay) is modelled as its effect: no   *)
(* message, hint or read in progress still carries a version that the      *)
(* tombstone's history covers, so nothing older can bring the key back.    *)
Grace(T) == \A C \in InFlight : \A x \in C.sibs : ~Covers(Join(T), x.id)

Reap ==
    /\ Reaping
    /\ PrefList \subseteq up
    /\ \E T \in {store[p] : p \in PrefList} :
         /\ \A p \in PrefList : store[p] = T
         /\ T.sibs # {}
         /\ \A x \in T.sibs : x.val.tomb
         /\ Grace(T)
         /\ store' = [s \in Servers |-> IF s \in PrefList THEN Empty ELSE store[s]]
         /\ buried' = buried \cup {w \in Clients : put[w].st # "none"
                                                   /\ Covers(Join(T), put[w].id)}
    /\ UNCHANGED <<hints, net, up, crashes, drops, pc, put, get>>

(* Faults.  A crash loses the volatile state: puts the server coordinates  *)
(* can no longer be acknowledged.  Its store and hints survive.            *)
Crash(s) ==
    /\ s \in up
    /\ crashes < MaxCrashes
    /\ up' = up \ {s}
    /\ crashes' = crashes + 1
    /\ put' = [c \in Clients |-> IF put[c].st = "pending" /\ put[c].coord = s
                                 THEN [put[c] EXCEPT !.st = "orphaned"]
                                 ELSE put[c]]
    /\ UNCHANGED <<store, hints, net, drops, pc, get, buried>>

Restart(s) ==
    /\ s \notin up
    /\ up' = up \cup {s}
    /\ UNCHANGED <<store, hints, net, crashes, drops, pc, put, get, buried>>

Drop(m) ==
    /\ m \in net
    /\ drops < MaxDrops
    /\ net' = net \ {m}
    /\ drops' = drops + 1
    /\ UNCHANGED <<store, hints, up, crashes, pc, put, get, buried>>

-----------------------------------------------------------------------------
ClientStep == \E c \in Clients :
                 \/ \E Q \in Quorums : Get(c, Q)
                 \/ \E s \in PrefList : Put(c, s)
DeliverAny == \E m \in net : Deliver(m)
HandoffAny == \E f \in Fallbacks, p \in PrefList : StartHandoff(f, p)
AntiEntropyAny == \E a, b \in PrefList : AntiEntropyStep(a, b)
RestartAny == \E s \in Servers : Restart(s)
Fault == \/ \E s \in Servers : Crash(s)
         \/ \E m \in net : Drop(m)

Next ==
    \/ ClientStep
    \/ DeliverAny
    \/ HandoffAny
    \/ AntiEntropyAny
    \/ Reap
    \/ RestartAny
    \/ Fault

Spec == Init /\ [][Next]_vars

(* Weak fairness on everything but clients and faults: once clients and    *)
(* faults stop, messages are delivered, hints handed off, crashed servers  *)
(* restart and anti-entropy runs.                                          *)
FairSpec == Spec /\ WF_vars(DeliverAny) /\ WF_vars(HandoffAny)
                 /\ WF_vars(AntiEntropyAny) /\ WF_vars(RestartAny)

-----------------------------------------------------------------------------
(* Invariants *)

AllClocks == {store[s] : s \in Servers}
             \cup {hints[f][p] : f \in Fallbacks, p \in PrefList}
             \cup {m.clock : m \in net}

Present(v) == \E C \in AllClocks : v \in Values(C)

(* Write w was superseded: another write's context covered it. *)
Superseded(w) ==
    \E w2 \in Clients \ {w} : put[w2].st # "none" /\ Covers(put[w2].ctx, put[w].id)

(* No acknowledged write is lost: it is on some replica, hint or message   *)
(* in flight, or a later write replaced it knowingly, or it was a          *)
(* tombstone (or a value it covered) that reaping removed.                 *)
NoLostAck ==
    \A w \in Clients :
        put[w].st = "acked" => Present(Val(w)) \/ Superseded(w) \/ w \in buried

(* Siblings are pairwise concurrent: no sibling was written with a context *)
(* that covered another sibling held next to it.                           *)
SiblingsConcurrent ==
    \A C \in AllClocks : \A x, y \in C.sibs :
        x # y => ~Covers(put[y.val.writer].ctx, x.id)

(* No resurrection: what reaping removed never comes back. *)
NoResurrection ==
    \A w \in buried : ~Present(Val(w))

(* Strict-quorum read-your-writes: with R + W > N, a get that started after *)
(* a put was acknowledged by primaries only returns that value or a        *)
(* successor: its context covers the put.                                  *)
SloppyAcked(w) == put[w].acks \ PrefList # {}

StrictReadYourWrites ==
    R + W > N =>
      \A c \in Clients :
        pc[c] = "done" =>
          \A w \in get[c].mustSee :
            (~SloppyAcked(w) /\ w \notin buried) =>
               Covers(Join(get[c].result), put[w].id)

TypeOK ==
    /\ up \subseteq Servers
    /\ crashes \in 0..MaxCrashes
    /\ drops \in 0..MaxDrops
    /\ pc \in [Clients -> {"idle", "read", "writing", "written", "done"}]
    /\ buried \subseteq Clients

(* Convergence: once faults stop, every message is delivered, every hint   *)
(* handed off, and the primaries hold the same clock.                      *)
Converged ==
    /\ net = {}
    /\ \A f \in Fallbacks, p \in PrefList : hints[f][p] = Empty
    /\ \A a, b \in PrefList : store[a] = store[b]

Convergence == <>[]Converged

-----------------------------------------------------------------------------
(* Witnesses, the stateright model's "sometimes" properties: states that   *)
(* must be reachable for the invariants above to mean something.  check.sh *)
(* counts the states satisfying each (tla --count-satisfying); with TLC,   *)
(* check ~Witness as an invariant and expect it to fail.                   *)

SomeSiblings == \E s \in PrefList : Cardinality(store[s].sibs) >= 2
SomeReadAfterAck == \E c \in Clients : pc[c] = "done" /\ get[c].mustSee # {}
SomeRepairSent == \E m \in net : m.kind = "repair"
SomeSloppyAck == \E w \in Clients : put[w].st = "acked" /\ SloppyAcked(w)
SomeHandoffDone == \E p \in PrefList : \E x \in store[p].sibs :
                     \E w \in Clients : Val(w) = x.val /\ SloppyAcked(w)
                     /\ \A f \in Fallbacks : hints[f][p] = Empty
SomeReaped == buried # {}
SomeSuperseded == \E w \in Clients : put[w].st = "acked" /\ Superseded(w)
=============================================================================
