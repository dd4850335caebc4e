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
    AntiEntropy,  \* primaries exchange what differs
    Reaping,      \* tombstones are reaped once every primary holds them
    MaxCrashes,   \* bound on crashes (durable state survives)
    MaxDrops,     \* bound on lost messages
    Classic       \* TRUE: Dynamo's per-coordinator vector clocks

ASSUME /\ PrefList \cap Fallbacks = {}
       /\ Deleters \subseteq Clients
       /\ R \in 1..Cardinality(PrefList) /\ W \in 1..Cardinality(PrefList)
       /\ Reads \subseteq {"before", "after"}
       /\ ~(Classic /\ Reaping)

Servers == PrefList \cup Fallbacks
N == Cardinality(PrefList)
None == "none"

VARIABLES
    store,    \* store[s]: the clock server s holds for the key (durable)
    hints,    \* hints[f][p]: what fallback f holds for owner p (durable)
    net,      \* messages in flight: a set, delivery removes one
    up,       \* the servers that are running
    crashes,  \* crashes so far
    drops,    \* messages lost so far
    pc,       \* pc[c]: where client c is in its script
    put,      \* put[c]: client c's put, as its coordinator tracks it
    get,      \* get[c]: client c's last get
    reaped,   \* ghost: tombstones reaped somewhere
    gone      \* ghost: gone[s], the values server s dropped as superseded

vars == <<store, hints, net, up, crashes, drops, pc, put, get, reaped, gone>>

Perms == Permutations(PrefList)

Quorums == {Q \in SUBSET PrefList : Cardinality(Q) = R}

-----------------------------------------------------------------------------
(* The clock: a DVVSet, or Dynamo's classic vector clocks.                 *)

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

(* A reaped clock: the tombstones dropped, the causal history kept, so a   *)
(* stale copy of a deleted value arriving later is recognised as           *)
(* superseded.                                                             *)
Reaped(S) == [vv |-> S.vv, sibs |-> {}]
OnlyTombstones(S) == S.sibs # {} /\ \A x \in S.sibs : x.val.tomb

(* Client c's value: the write is a tombstone when c deletes.              *)
Val(c) == [writer |-> c, tomb |-> c \in Deleters]

(* The merge of the clocks of a set of primaries.                          *)
RECURSIVE MergeAll(_)
MergeAll(Q) ==
    IF Q = {} THEN Empty
    ELSE LET p == CHOOSE q \in Q : TRUE
         IN  Sync(store[p], MergeAll(Q \ {p}))

-----------------------------------------------------------------------------
(* Messages.  A replica's acknowledgement and a read's answers are not     *)
(* messages of their own: see README.md, "Abstractions".                   *)

Msg(kind, to, clock, c, hint, from) ==
    [kind |-> kind, to |-> to, clock |-> clock, put |-> c, hint |-> hint,
     from |-> from]
Replicate(c, to, clock, hint) == Msg("replicate", to, clock, c, hint, None)
Repair(to, clock) == Msg("repair", to, clock, None, None, None)
Handoff(f, p, clock) == Msg("handoff", p, clock, None, None, f)
ReapMsg(to, clock) == Msg("reap", to, clock, None, None, None)

(* The coordinator's record of a put: the clock it stored and replicates,  *)
(* the servers that stored it, the hinted copies it sent (owner, fallback) *)
(* and whether the record still exists (a crash loses it).  ctx, id and    *)
(* strict are ghosts for the invariants: the client's context, the write's *)
(* dot, and whether W primaries (no fallback needed) acknowledged it.      *)
NoPut == [st |-> "none", coord |-> None, ctx |-> Zero, id |-> None,
          clock |-> Empty, acks |-> {}, hinted |-> {}, live |-> FALSE,
          strict |-> FALSE]
NoGet == [result |-> Empty, mustSee |-> {}]

(* Server s's store becomes clk; the ghost gone[s] records what it lost.   *)
SetStore(s, clk) ==
    /\ store' = [store EXCEPT ![s] = clk]
    /\ gone' = [gone EXCEPT ![s] = @ \cup (Values(store[s]) \ Values(clk))]

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
    /\ reaped = {}
    /\ gone = [s \in Servers |-> {}]

(* Client c gets the key, before its put or after its put was              *)
(* acknowledged.  The coordinator asks the primaries and returns once R of *)
(* them (the set Q) answered: the merge of their clocks, whose join is the *)
(* context for a following put.  With read repair it then sends the merge  *)
(* to every replica that answered with something else.  The get remembers  *)
(* which puts were acknowledged when it started, for read-your-writes.     *)
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
    /\ UNCHANGED <<store, hints, up, crashes, drops, put, reaped, gone>>

(* Client c's put, coordinated by primary s: s updates its clock with the  *)
(* client's context (empty for a blind write), stores it durably, counts   *)
(* itself as the first of W acknowledgements and replicates the new clock  *)
(* to the other primaries.                                                 *)
Put(c, s) ==
    /\ pc[c] \in {"idle", "read"}
    /\ s \in up
    /\ LET ctx   == IF pc[c] = "read" THEN Join(get[c].result) ELSE Zero
           new   == Update(ctx, store[s], s, Val(c))
           acked == W <= 1
       IN  /\ SetStore(s, new)
           /\ net' = net \cup {Replicate(c, p, new, None) : p \in PrefList \ {s}}
           /\ put' = [put EXCEPT ![c] =
                        [st |-> IF acked THEN "acked" ELSE "pending",
                         coord |-> s, ctx |-> ctx, id |-> IdOf(new, Val(c)),
                         clock |-> new, acks |-> {s}, hinted |-> {},
                         live |-> TRUE, strict |-> acked]]
           /\ pc' = [pc EXCEPT ![c] = IF acked THEN "written" ELSE "writing"]
    /\ UNCHANGED <<hints, up, crashes, drops, get, reaped>>

(* Sloppy quorum: the coordinator of a put still short of W suspects a     *)
(* primary p that has not acknowledged (rightly if p is down, wrongly if   *)
(* it is slow) and sends a copy to a running fallback f with a hint        *)
(* naming p.  Each owner and each fallback is used once per put.           *)
HintedWrite(c, p, f) ==
    /\ Sloppy
    /\ put[c].st = "pending" /\ put[c].live
    /\ put[c].coord \in up
    /\ p \in PrefList \ put[c].acks
    /\ f \in up
    /\ \A h \in put[c].hinted : h[1] # p /\ h[2] # f
    /\ net' = net \cup {Replicate(c, f, put[c].clock, p)}
    /\ put' = [put EXCEPT ![c].hinted = @ \cup {<<p, f>>}]
    /\ UNCHANGED <<store, hints, up, crashes, drops, pc, get, reaped, gone>>

(* The coordinator of put c hears that server t stored it durably; rest is *)
(* the network without the delivered message.  Once all N primaries hold   *)
(* a delete's tombstone-only clock, the coordinator asks them to reap it.  *)
Ack(c, t, rest) ==
    IF put[c].live /\ put[c].coord \in up
    THEN LET acks  == put[c].acks \cup {t}
             acked == put[c].st = "acked" \/ Cardinality(acks) >= W
             reap  == /\ Reaping
                      /\ OnlyTombstones(put[c].clock)
                      /\ PrefList \subseteq acks
                      /\ ~(PrefList \subseteq put[c].acks)
         IN  /\ put' = [put EXCEPT ![c].acks = acks,
                                   ![c].st = IF acked THEN "acked" ELSE @,
                                   ![c].strict =
                                      IF put[c].st = "pending" /\ acked
                                      THEN Cardinality(acks \cap PrefList) >= W
                                      ELSE @]
             /\ pc' = IF acked THEN [pc EXCEPT ![c] = IF @ = "writing" THEN "written"
                                                     ELSE @]
                      ELSE pc
             /\ net' = IF reap
                       THEN rest \cup {ReapMsg(p, put[c].clock) : p \in PrefList}
                       ELSE rest
    ELSE /\ net' = rest
         /\ UNCHANGED <<put, pc>>

(* A running server receives message m.                                    *)
Deliver(m) ==
    /\ m \in net
    /\ m.to \in up
    /\ CASE m.kind = "replicate" /\ m.hint = None ->
              /\ SetStore(m.to, Sync(store[m.to], m.clock))
              /\ Ack(m.put, m.to, net \ {m})
              /\ UNCHANGED <<hints, reaped>>
         [] m.kind = "replicate" /\ m.hint # None ->
              \* a fallback keeps the copy as a durable hint for its owner
              /\ hints' = [hints EXCEPT ![m.to][m.hint] = Sync(@, m.clock)]
              /\ Ack(m.put, m.to, net \ {m})
              /\ UNCHANGED <<store, reaped, gone>>
         [] m.kind = "repair" ->
              /\ SetStore(m.to, Sync(store[m.to], m.clock))
              /\ net' = net \ {m}
              /\ UNCHANGED <<hints, put, pc, reaped>>
         [] m.kind = "handoff" ->
              \* the owner stores the hinted data; its acknowledgement lets
              \* the fallback drop the hint, if the fallback is running and
              \* has received nothing more for the owner meanwhile
              /\ SetStore(m.to, Sync(store[m.to], m.clock))
              /\ hints' = IF m.from \in up /\ hints[m.from][m.to] = m.clock
                          THEN [hints EXCEPT ![m.from][m.to] = Empty]
                          ELSE hints
              /\ net' = net \ {m}
              /\ UNCHANGED <<put, pc, reaped>>
         [] m.kind = "reap" ->
              \* reap only if the replica still holds exactly that clock
              /\ IF store[m.to] = m.clock
                 THEN /\ SetStore(m.to, Reaped(m.clock))
                      /\ reaped' = reaped \cup {x.val.writer : x \in m.clock.sibs}
                 ELSE UNCHANGED <<store, gone, reaped>>
              /\ net' = net \ {m}
              /\ UNCHANGED <<hints, put, pc>>
    /\ UNCHANGED <<up, crashes, drops, get>>

(* Hinted handoff: fallback f offers what it holds for p once p is up.     *)
StartHandoff(f, p) ==
    /\ f \in up /\ p \in up
    /\ hints[f][p] # Empty
    /\ Handoff(f, p, hints[f][p]) \notin net
    /\ net' = net \cup {Handoff(f, p, hints[f][p])}
    /\ UNCHANGED <<store, hints, up, crashes, drops, pc, put, get, reaped, gone>>

(* Anti-entropy: primary b merges what differs from primary a's clock.     *)
AntiEntropyStep(a, b) ==
    /\ AntiEntropy
    /\ a # b /\ a \in up /\ b \in up
    /\ Sync(store[b], store[a]) # store[b]
    /\ SetStore(b, Sync(store[b], store[a]))
    /\ UNCHANGED <<hints, net, up, crashes, drops, pc, put, get, reaped>>

(* Faults.  A crash loses the volatile state, the coordinator's records of *)
(* the puts it coordinates; its store and hints survive.                   *)
Crash(s) ==
    /\ s \in up
    /\ crashes < MaxCrashes
    /\ up' = up \ {s}
    /\ crashes' = crashes + 1
    /\ put' = [c \in Clients |-> IF put[c].coord = s
                                 THEN [put[c] EXCEPT !.live = FALSE]
                                 ELSE put[c]]
    /\ UNCHANGED <<store, hints, net, drops, pc, get, reaped, gone>>

Restart(s) ==
    /\ s \notin up
    /\ up' = up \cup {s}
    /\ UNCHANGED <<store, hints, net, crashes, drops, pc, put, get, reaped, gone>>

Drop(m) ==
    /\ m \in net
    /\ drops < MaxDrops
    /\ net' = net \ {m}
    /\ drops' = drops + 1
    /\ UNCHANGED <<store, hints, up, crashes, pc, put, get, reaped, gone>>

-----------------------------------------------------------------------------
ClientStep == \E c \in Clients :
                 \/ \E Q \in Quorums : Get(c, Q)
                 \/ \E s \in PrefList : Put(c, s)
CoordinatorStep == \E c \in Clients, p \in PrefList, f \in Fallbacks :
                      HintedWrite(c, p, f)
DeliverAny == \E m \in net : Deliver(m)
HandoffAny == \E f \in Fallbacks, p \in PrefList : StartHandoff(f, p)
AntiEntropyAny == \E a, b \in PrefList : AntiEntropyStep(a, b)
RestartAny == \E s \in Servers : Restart(s)
Fault == \/ \E s \in Servers : Crash(s)
         \/ \E m \in net : Drop(m)

Next ==
    \/ ClientStep
    \/ CoordinatorStep
    \/ DeliverAny
    \/ HandoffAny
    \/ AntiEntropyAny
    \/ RestartAny
    \/ Fault

Spec == Init /\ [][Next]_vars

(* Weak fairness on everything but clients, suspicion and faults: once     *)
(* those stop, messages are delivered, hints handed off, crashed servers   *)
(* restart and anti-entropy runs.                                          *)
FairSpec == /\ Spec
            /\ WF_vars(DeliverAny)
            /\ WF_vars(HandoffAny)
            /\ WF_vars(AntiEntropyAny)
            /\ WF_vars(RestartAny)

-----------------------------------------------------------------------------
(* Invariants                                                              *)

(* Every clock held by a replica, a hint or a message in flight.           *)
AllClocks == {store[s] : s \in Servers}
             \cup {hints[f][p] : f \in Fallbacks, p \in PrefList}
             \cup {m.clock : m \in net}

Issued == {w \in Clients : put[w].st # "none"}

(* Write w2's context covered write w: w2 meant to replace w.              *)
Replaces(w2, w) == w2 # w /\ Covers(put[w2].ctx, put[w].id)

(* The writes that are live (held somewhere, or reaped tombstones, which   *)
(* still stand for the delete) and everything they replace, transitively.  *)
Live == {w \in Issued : \E C \in AllClocks : Val(w) \in Values(C)} \cup reaped

RECURSIVE Closure(_, _)
Closure(S, k) ==
    IF k = 0 THEN S
    ELSE Closure(S \cup {w \in Issued : \E w2 \in S : Replaces(w2, w)}, k - 1)

Accounted == Closure(Live, Cardinality(Clients))

(* No acknowledged write is lost: it is on some replica, hint or message   *)
(* in flight, or a live write (or reaped tombstone) replaced it.           *)
NoLostAck == \A w \in Clients : put[w].st = "acked" => w \in Accounted

(* Siblings are pairwise concurrent: no sibling was written with a context *)
(* that covered another sibling held next to it.                           *)
SiblingsConcurrent ==
    \A C \in AllClocks : \A x, y \in C.sibs :
        x # y => ~Covers(put[y.val.writer].ctx, x.id)

(* No resurrection: a replica never again holds a value it dropped as      *)
(* superseded (a deleted value included).                                  *)
NoResurrection == \A s \in Servers : Values(store[s]) \cap gone[s] = {}

(* Strict-quorum read-your-writes: with R + W > N, a get that started      *)
(* after a put was acknowledged by primaries only returns that value or a  *)
(* successor: the context it returns covers the put.  Crashes are allowed  *)
(* (state is durable); writes acknowledged by a fallback are exempt.       *)
SloppyAcked(w) == ~put[w].strict

StrictReadYourWrites ==
    R + W > N =>
      \A c \in Clients : \A w \in get[c].mustSee :
        ~SloppyAcked(w) => Covers(Join(get[c].result), put[w].id)

TypeOK ==
    /\ up \subseteq Servers
    /\ crashes \in 0..MaxCrashes
    /\ drops \in 0..MaxDrops
    /\ pc \in [Clients -> {"idle", "read", "writing", "written", "done"}]
    /\ reaped \subseteq Deleters
    /\ \A c \in Clients : put[c].st \in {"none", "pending", "acked"}

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
SomeReadAfterAck == \E c \in Clients : get[c].mustSee # {}
SomeRepairSent == \E m \in net : m.kind = "repair"
SomeSloppyAck == \E w \in Clients : put[w].st = "acked" /\ SloppyAcked(w)
SomeHandoffDone == \E p \in PrefList : \E x \in store[p].sibs :
                     \E w \in Clients : Val(w) = x.val /\ SloppyAcked(w)
                     /\ \A f \in Fallbacks : hints[f][p] = Empty
SomeReaped == reaped # {}
SomeReplaced == \E w \in Clients : put[w].st = "acked" /\ \E w2 \in Clients : Replaces(w2, w)
SomeDropped == drops > 0
SomeCrash == crashes > 0
=============================================================================
