// JetStream's health in the status, from the servers' own monitoring answers: whether JetStream
// runs on every server with a meta leader (condition JetStream), and how full each server's file
// store is (condition JetStreamStorage, levels at 80% and 90%); re-created servers of removed
// peers that nats-server has not re-admitted yet turn JetStream False (PeersRejoining) with the
// time it will (rejoin.ts). Events are derived from how the conditions change between the
// stored status and the next one, so each crossing is announced once, not on every poll. Pure.
import type { NatsCondition, NatsStatus } from '../api/nats.ts';
import type { ServerHealth } from '../nats/monitoring.ts';
import type { NatsEvent } from './events.ts';
import { metaPeersOf, rejoinMessage, type Rejoining } from './rejoin.ts';
import { compareStrings } from '../base/order.ts';

export const JETSTREAM_CONDITION = 'JetStream';
export const STORAGE_CONDITION = 'JetStreamStorage';

export const JetStreamReason = {
  Enabled: 'Enabled',
  Disabled: 'Disabled',
  NoMetaLeader: 'NoMetaLeader',
  /** Re-created servers of removed peers wait for nats-server to re-admit them (rejoin.ts). */
  PeersRejoining: 'PeersRejoining',
  /** One of them is still outside the meta group past the time nats-server admits it. */
  RejoinOverdue: 'RejoinOverdue',
  Unknown: 'Unknown',
} as const;

/** Storage levels, lowest first; the reason of the JetStreamStorage condition. */
export const StorageReason = {
  Normal: 'StorageNormal',
  High: 'StorageHigh',
  Critical: 'StorageCritical',
  Unknown: 'Unknown',
} as const;

/** Percent of the store at which the level rises; it falls again 5 points lower. */
export const STORAGE_HIGH_PERCENT = 80;
export const STORAGE_CRITICAL_PERCENT = 90;
const HYSTERESIS_PERCENT = 5;

export interface HealthCondition {
  readonly type: string;
  readonly status: NatsCondition['status'];
  readonly reason: string;
  readonly message: string;
}

function sortedByName(servers: ReadonlyMap<string, ServerHealth>): ServerHealth[] {
  return [...servers.values()].sort((a, b) => compareStrings(a.pod, b.pod));
}

/** Enabled everywhere, with re-created servers not yet re-admitted: says by when they are. */
function withRejoining(
  enabled: HealthCondition,
  rejoining: readonly Rejoining[],
  servers: ReadonlyMap<string, ServerHealth>,
): HealthCondition {
  if (enabled.reason !== JetStreamReason.Enabled || rejoining.length === 0) return enabled;
  const overdue = rejoining.some((r) => r.overdue);
  return {
    ...enabled,
    status: 'False',
    reason: overdue ? JetStreamReason.RejoinOverdue : JetStreamReason.PeersRejoining,
    message: `${enabled.message} ${rejoinMessage(rejoining, metaPeersOf(servers)?.length ?? 0)}`,
  };
}

function jetStreamCondition(servers: readonly ServerHealth[], clustered: boolean): HealthCondition {
  const type = JETSTREAM_CONDITION;
  const unreachable = servers.filter((s) => !s.reachable);
  const reachable = servers.flatMap((s) => (s.reachable ? [s] : []));
  const disabled = reachable.filter((s) => !s.jetStreamEnabled);
  if (disabled.length > 0) {
    return {
      type,
      status: 'False',
      reason: JetStreamReason.Disabled,
      message:
        `JetStream is disabled on ${disabled.map((s) => s.pod).join(', ')} (a full store or a ` +
        'removed peer disables it); streams with replicas there run without them.',
    };
  }
  if (unreachable.length > 0) {
    return {
      type,
      status: 'Unknown',
      reason: JetStreamReason.Unknown,
      message: `The monitoring of ${unreachable.map((s) => `${s.pod} (${s.error})`).join(', ')} did not answer.`,
    };
  }
  const leaders = new Set(reachable.map((s) => s.metaLeader ?? ''));
  if (clustered && (leaders.has('') || leaders.size !== 1)) {
    const without = reachable.filter((s) => s.metaLeader === undefined).map((s) => s.pod);
    return {
      type,
      status: 'False',
      reason: JetStreamReason.NoMetaLeader,
      message:
        without.length > 0
          ? `No JetStream meta leader known to ${without.join(', ')}: the JetStream API is unavailable there.`
          : `The servers name different JetStream meta leaders (${[...leaders].join(', ')}).`,
    };
  }
  const [leader] = leaders;
  return {
    type,
    status: 'True',
    reason: JetStreamReason.Enabled,
    message:
      `JetStream is enabled on all ${String(servers.length)} server(s)` +
      (clustered ? `; the meta leader is ${leader ?? ''}.` : '.'),
  };
}

function percent(used: number, max: number): number {
  return max > 0 ? Math.floor((used / max) * 100) : 0;
}

const LEVELS = [StorageReason.Normal, StorageReason.High, StorageReason.Critical] as const;
type Level = 0 | 1 | 2;

function levelOf(reason: string | undefined): Level {
  const index = LEVELS.indexOf(reason as (typeof LEVELS)[number]);
  return index < 0 ? 0 : (index as Level);
}

/** The level at `pct`, holding the previous one until it is 5 points below its threshold. */
export function storageLevel(pct: number, previous: Level): Level {
  const up: Level = pct >= STORAGE_CRITICAL_PERCENT ? 2 : pct >= STORAGE_HIGH_PERCENT ? 1 : 0;
  const kept: Level =
    pct >= STORAGE_CRITICAL_PERCENT - HYSTERESIS_PERCENT
      ? 2
      : pct >= STORAGE_HIGH_PERCENT - HYSTERESIS_PERCENT
        ? 1
        : 0;
  return Math.max(up, Math.min(previous, kept)) as Level;
}

function mib(bytes: number): string {
  return `${String(Math.round(bytes / (1024 * 1024)))} MiB`;
}

function storageCondition(
  servers: readonly ServerHealth[],
  previous: NatsCondition | undefined,
): HealthCondition {
  const type = STORAGE_CONDITION;
  const measured = servers.flatMap((s) =>
    s.reachable && s.storageUsed !== undefined && s.storageMax !== undefined && s.storageMax > 0
      ? [{ pod: s.pod, pct: percent(s.storageUsed, s.storageMax), max: s.storageMax }]
      : [],
  );
  if (measured.length === 0) {
    // A level already reached stays until a server reports again: a monitoring blip is no
    // reason to announce the same crossing twice.
    if (previous !== undefined && previous.reason !== StorageReason.Unknown) {
      const { status, reason, message } = previous;
      return { type, status, reason, message };
    }
    return {
      type,
      status: 'Unknown',
      reason: StorageReason.Unknown,
      message: 'No server reported its file storage.',
    };
  }
  const highest = Math.max(...measured.map((m) => m.pct));
  const level = storageLevel(highest, levelOf(previous?.reason));
  // Whole percent only: the status changes when a figure does, not with every byte written.
  const figures = measured.map((m) => `${m.pod} ${String(m.pct)}%`).join(', ');
  const maxes = [...new Set(measured.map((m) => mib(m.max)))].join(' / ');
  const missing = servers.filter((s) => !measured.some((m) => m.pod === s.pod)).map((s) => s.pod);
  const unknown = missing.length > 0 ? ` Not reported by ${missing.join(', ')}.` : '';
  const message = `File storage used of each server's ${maxes} store: ${figures}.${unknown}`;
  return {
    type,
    status: level === 0 ? 'True' : 'False',
    reason: LEVELS[level],
    message,
  };
}

/**
 * The JetStream and JetStreamStorage conditions from every server's answers; `rejoining` are
 * re-created servers of removed peers the meta group has not admitted yet (rejoin.ts).
 */
export function jetStreamConditions(
  servers: ReadonlyMap<string, ServerHealth>,
  clustered: boolean,
  previous: NatsStatus | undefined,
  rejoining: readonly Rejoining[] = [],
): HealthCondition[] {
  const sorted = sortedByName(servers);
  const before = previous?.conditions?.find((c) => c.type === STORAGE_CONDITION);
  return [
    withRejoining(jetStreamCondition(sorted, clustered), rejoining, servers),
    storageCondition(sorted, before),
  ];
}

/** Whether these conditions make the state Warning (JetStream disabled, or a nearly full store). */
export function healthWarns(conditions: readonly { type: string; reason: string }[]): boolean {
  // No meta leader is left to the condition (and the alert): a forming cluster has none for its
  // first seconds after every pod is Ready, and that is no reason to leave Ready.
  return conditions.some(
    (c) =>
      (c.type === JETSTREAM_CONDITION &&
        (c.reason === JetStreamReason.Disabled || c.reason === JetStreamReason.RejoinOverdue)) ||
      (c.type === STORAGE_CONDITION && c.reason === StorageReason.Critical),
  );
}

/** Whether JetStream is not known to be serving: then the servers are asked again sooner. */
export function healthUnsettled(status: NatsStatus | undefined): boolean {
  const js = status?.conditions?.find((c) => c.type === JETSTREAM_CONDITION);
  return js !== undefined && js.status !== 'True';
}

const REJOIN_REASONS: readonly string[] = [
  JetStreamReason.PeersRejoining,
  JetStreamReason.RejoinOverdue,
];

/** A re-admission awaited (Normal), overdue (Warning), and done (Normal): once each. */
function rejoinEvents(
  before: NatsCondition | undefined,
  after: NatsCondition | undefined,
): NatsEvent[] {
  if (after === undefined || before?.reason === after.reason) return [];
  if (after.reason === JetStreamReason.PeersRejoining) {
    return [{ type: 'Normal', reason: 'PeersRejoining', message: after.message }];
  }
  if (after.reason === JetStreamReason.RejoinOverdue) {
    return [{ type: 'Warning', reason: 'RejoinOverdue', message: after.message }];
  }
  if (after.reason === JetStreamReason.Enabled && REJOIN_REASONS.includes(before?.reason ?? '')) {
    return [{ type: 'Normal', reason: 'PeersRejoined', message: after.message }];
  }
  return [];
}

/**
 * Warning Events for what got worse from `previous` to `next`, and the Normal ones of a
 * re-admission awaited and done: once per change, never on repeats.
 */
export function healthEvents(previous: NatsStatus | undefined, next: NatsStatus): NatsEvent[] {
  const find = (status: NatsStatus | undefined, type: string): NatsCondition | undefined =>
    status?.conditions?.find((c) => c.type === type);
  const events: NatsEvent[] = [];
  const jsBefore = find(previous, JETSTREAM_CONDITION);
  const jsAfter = find(next, JETSTREAM_CONDITION);
  if (
    jsAfter?.reason === JetStreamReason.Disabled &&
    jsBefore?.reason !== JetStreamReason.Disabled
  ) {
    events.push({ type: 'Warning', reason: 'JetStreamDisabled', message: jsAfter.message });
  }
  events.push(...rejoinEvents(jsBefore, jsAfter));
  const storageBefore = find(previous, STORAGE_CONDITION);
  const storageAfter = find(next, STORAGE_CONDITION);
  if (storageAfter !== undefined && storageAfter.reason !== StorageReason.Unknown) {
    const was = levelOf(storageBefore?.reason);
    const is = levelOf(storageAfter.reason);
    if (is > was) {
      const threshold = is === 2 ? STORAGE_CRITICAL_PERCENT : STORAGE_HIGH_PERCENT;
      events.push({
        type: 'Warning',
        reason: is === 2 ? 'StorageCritical' : 'StorageHigh',
        message: `JetStream file storage crossed ${String(threshold)}%: ${storageAfter.message}`,
      });
    }
  }
  return events;
}
