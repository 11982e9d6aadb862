import { describe, expect, it } from 'vitest';
import { addressBucket, AttemptLimiter, AuthLimits, type Admission, type Attempt } from '../../src/auth/attemptLimiter.js';
import { loadSettings } from '../../src/config.js';
import { MemoryAttemptStore } from '../../src/store/attemptStore.js';

function fakeClock(start = Date.UTC(2030, 0, 1)) {
  let ms = start;
  return {
    now: () => new Date(ms),
    advance: (seconds: number) => void (ms += seconds * 1000),
  };
}

const budget = (limit: number, windowSeconds: number) => ({ limit, windowSeconds });

function admitted(a: Admission): Attempt {
  if (!a.admitted) throw new Error(`refused, retry after ${a.retryAfter} s`);
  return a.attempt;
}
const retryAfter = (a: Admission) => (a.admitted ? 0 : a.retryAfter);

describe('AttemptLimiter', () => {
  it('lets `limit` attempts through per window and tells the next one when the oldest leaves it', async () => {
    const clock = fakeClock();
    const limiter = new AttemptLimiter(new MemoryAttemptStore(), clock.now);
    const charge = [{ key: 'k', budget: budget(3, 60) }];
    for (let i = 0; i < 3; i++) {
      admitted(await limiter.admit(charge));
      clock.advance(10);
    }
    // Records at 0, 10, 20; now 30: room again once the one at 0 leaves, at 60.
    expect(retryAfter(await limiter.admit(charge))).toBe(30);
    clock.advance(29);
    expect(retryAfter(await limiter.admit(charge))).toBe(1);
    clock.advance(1);
    admitted(await limiter.admit(charge));
  });

  it('keeps refused attempts out of the count, so hammering a spent budget does not extend the wait', async () => {
    const clock = fakeClock();
    const limiter = new AttemptLimiter(new MemoryAttemptStore(), clock.now);
    const charge = [{ key: 'k', budget: budget(2, 100) }];
    admitted(await limiter.admit(charge));
    admitted(await limiter.admit(charge));
    for (let t = 0; t < 99; t += 9) {
      expect(retryAfter(await limiter.admit(charge))).toBe(100 - t);
      clock.advance(9);
    }
    clock.advance(1); // t = 100
    admitted(await limiter.admit(charge));
  });

  it('once the database found a key spent twice, refuses it from memory for a second, or until this process refunds it', async () => {
    const clock = fakeClock();
    const store = new MemoryAttemptStore();
    let operations = 0;
    const counted = new Proxy(store, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? (...args: unknown[]) => (operations++, value.apply(target, args)) : value;
      },
    });
    const limiter = new AttemptLimiter(counted, clock.now);
    const charge = [{ key: 'k', budget: budget(2, 60) }];
    const first = admitted(await limiter.admit(charge));
    admitted(await limiter.admit(charge));
    expect(retryAfter(await limiter.admit(charge))).toBe(60);
    const afterFirst = operations;
    clock.advance(0.2);
    expect(retryAfter(await limiter.admit(charge))).toBe(60);
    expect(operations).toBeGreaterThan(afterFirst); // once is not believed: a success elsewhere may have cleared it
    const before = operations;
    clock.advance(0.5);
    expect(retryAfter(await limiter.admit(charge))).toBe(60);
    expect(retryAfter(await limiter.admit([{ key: 'other', budget: budget(5, 60) }, ...charge]))).toBe(60);
    expect(operations).toBe(before);
    clock.advance(19.3); // asked again a second after the database last said so
    expect(retryAfter(await limiter.admit(charge))).toBe(40);
    expect(operations).toBeGreaterThan(before);
    await limiter.refund(first);
    admitted(await limiter.admit(charge));
    // Spent again (records at 0 and 20): room once the one at 0 leaves.
    expect(retryAfter(await limiter.admit(charge))).toBe(40);
    clock.advance(40);
    admitted(await limiter.admit(charge));
  });

  it('with several records to go, waits for as many as must leave', async () => {
    const clock = fakeClock();
    const store = new MemoryAttemptStore();
    const big = new AttemptLimiter(store, clock.now);
    for (let i = 0; i < 5; i++) {
      admitted(await big.admit([{ key: 'k', budget: budget(10, 60) }]));
      clock.advance(5);
    }
    // Records at 0, 5, 10, 15, 20; now 25; a budget of 3 needs three of them gone (the one at 10 leaves at 70).
    expect(retryAfter(await big.admit([{ key: 'k', budget: budget(3, 60) }]))).toBe(45);
  });

  it('refuses when any of the charged keys is spent, and charges none of them then', async () => {
    const clock = fakeClock();
    const store = new MemoryAttemptStore();
    const limiter = new AttemptLimiter(store, clock.now);
    admitted(await limiter.admit([{ key: 'small', budget: budget(1, 60) }]));
    const both = [
      { key: 'small', budget: budget(1, 60) },
      { key: 'large', budget: budget(100, 60) },
    ];
    expect((await limiter.admit(both)).admitted).toBe(false);
    expect(store.size).toBe(1);
  });

  it('never lets more than the budget through a burst, and a burst refused in a tight race leaves the budget whole', async () => {
    const clock = fakeClock();
    const store = new MemoryAttemptStore();
    const limiter = new AttemptLimiter(store, clock.now);
    const charge = [{ key: 'k', budget: budget(5, 60) }];
    const burst = await Promise.all(Array.from({ length: 50 }, () => limiter.admit(charge)));
    const through = burst.filter((a) => a.admitted).length;
    expect(through).toBeLessThanOrEqual(5);
    for (let i = through; i < 5; i++) admitted(await limiter.admit(charge));
    expect((await limiter.admit(charge)).admitted).toBe(false);
  });

  it('an attempt whose record a success cleared before it was counted does not go ahead on no record: it is charged again', async () => {
    const clock = fakeClock();
    const store = new MemoryAttemptStore();
    const limiter = new AttemptLimiter(store, clock.now);
    const charge = [{ key: 'pair', budget: budget(2, 60) }];
    // Twelve attempts charged at once; a success clears the key after their inserts, before their counts.
    const realCount = store.count.bind(store);
    let cleared = false;
    store.count = async (windows) => {
      if (!cleared) {
        cleared = true;
        await store.removeKey('pair', clock.now());
      }
      return realCount(windows);
    };
    const burst = await Promise.all(Array.from({ length: 12 }, () => limiter.admit(charge)));
    const through = burst.filter((a) => a.admitted);
    // The budget afresh after the clear: at most 2 go ahead, each holding a record that was counted
    // (in this lock-step race all may be refused), and the rest of the budget is still there.
    expect(through.length).toBeLessThanOrEqual(2);
    expect(store.size).toBe(through.length);
    for (let i = through.length; i < 2; i++) admitted(await limiter.admit(charge));
    expect((await limiter.admit(charge)).admitted).toBe(false);
  });

  it('successes charged before an attempt, clearing the key while it is counted, do not clear it nor refuse it', async () => {
    const clock = fakeClock();
    const store = new MemoryAttemptStore();
    const limiter = new AttemptLimiter(store, clock.now);
    const realCount = store.count.bind(store);
    // Before every count, a success charged a moment earlier clears the key up to its own charge.
    store.count = async (windows) => {
      await store.removeKey('k', new Date(clock.now().getTime() - 1));
      return realCount(windows);
    };
    for (let i = 0; i < 10; i++) {
      admitted(await limiter.admit([{ key: 'k', budget: budget(100, 60) }]));
      clock.advance(1);
    }
  });

  it('refunds an attempt from the keys asked, and clears a key of every record charged up to it', async () => {
    const clock = fakeClock();
    const store = new MemoryAttemptStore();
    const limiter = new AttemptLimiter(store, clock.now);
    const charges = [
      { key: 'a', budget: budget(5, 60) },
      { key: 'b', budget: budget(5, 60) },
    ];
    admitted(await limiter.admit(charges));
    admitted(await limiter.admit(charges));
    const third = admitted(await limiter.admit(charges));
    clock.advance(1);
    admitted(await limiter.admit(charges)); // charged after the third: not cleared by it
    await limiter.refund(third, { clearKeys: ['a'] });
    // 'a' lost the three records up to the third attempt's, 'b' only the third attempt's.
    expect(await store.count([{ key: 'a', since: new Date(0) }, { key: 'b', since: new Date(0) }])).toEqual(
      new Map([
        ['a', 1],
        ['b', 3],
      ]),
    );
  });

  it('forgets records once their window has passed', async () => {
    const clock = fakeClock();
    const store = new MemoryAttemptStore();
    const limiter = new AttemptLimiter(store, clock.now);
    admitted(await limiter.admit([{ key: 'k', budget: budget(5, 60) }]));
    clock.advance(61);
    admitted(await limiter.admit([{ key: 'other', budget: budget(5, 60) }]));
    expect(store.size).toBe(1);
  });
});

describe('AuthLimits', () => {
  const settings = loadSettings({
    LOGIN_RATE_LIMIT: '2',
    LOGIN_USER_RATE_LIMIT: '4',
    LOGIN_ADDRESS_RATE_LIMIT: '6',
    REGISTRATION_RATE_LIMIT: '2',
  });

  it('charges a login to the (username, address) pair, the username and the address', async () => {
    const clock = fakeClock();
    const limits = new AuthLimits(new MemoryAttemptStore(), settings, clock.now);
    // The pair: two from one address.
    admitted(await limits.admitLogin('alice', '10.0.0.1'));
    admitted(await limits.admitLogin('alice', '10.0.0.1'));
    expect((await limits.admitLogin('alice', '10.0.0.1')).admitted).toBe(false);
    // The username: four from anywhere.
    admitted(await limits.admitLogin('alice', '10.0.0.2'));
    admitted(await limits.admitLogin('alice', '10.0.0.3'));
    expect((await limits.admitLogin('alice', '10.0.0.4')).admitted).toBe(false);
    // The address: six across usernames (two already spent on alice).
    for (const name of ['b1', 'b2', 'b3', 'b4']) admitted(await limits.admitLogin(name, '10.0.0.1'));
    expect((await limits.admitLogin('b5', '10.0.0.1')).admitted).toBe(false);
    admitted(await limits.admitLogin('b5', '10.0.0.9'));
  });

  it('after a successful login the pair starts afresh, but failures others caused against the username stay', async () => {
    const clock = fakeClock();
    const limits = new AuthLimits(new MemoryAttemptStore(), settings, clock.now);
    admitted(await limits.admitLogin('alice', '10.9.0.1')); // an attacker
    admitted(await limits.admitLogin('alice', '10.9.0.2')); // another
    admitted(await limits.admitLogin('alice', '192.0.2.7')); // alice mistypes
    const right = admitted(await limits.admitLogin('alice', '192.0.2.7'));
    await limits.loginSucceeded(right, 'alice', '192.0.2.7');
    // The pair is whole again (2), but the username has 3 of 4 spent: one more from anywhere.
    admitted(await limits.admitLogin('alice', '192.0.2.7'));
    expect((await limits.admitLogin('alice', '192.0.2.7')).admitted).toBe(false);
  });

  it('stores no username or address in its keys', () => {
    const limits = new AuthLimits(new MemoryAttemptStore(), settings, () => new Date());
    const keys = Object.values(limits.loginCharges('my secret password', '203.0.113.5')).map((c) => c.key);
    expect(keys).toHaveLength(3);
    for (const key of keys) {
      expect(key).not.toContain('secret');
      expect(key).not.toContain('203.0');
    }
    expect(new Set(keys).size).toBe(3);
  });

  it('limits registrations per address', async () => {
    const limits = new AuthLimits(new MemoryAttemptStore(), settings, fakeClock().now);
    admitted(await limits.admitRegistration('10.0.0.1'));
    admitted(await limits.admitRegistration('::ffff:10.0.0.1'));
    expect(retryAfter(await limits.admitRegistration('10.0.0.1'))).toBe(3600);
    admitted(await limits.admitRegistration('10.0.0.2'));
  });

  it('holds at most LOGIN_ADDRESS_CONCURRENCY logins and registrations of one address in hand, an IPv6 /64 counting as one address', () => {
    const limits = new AuthLimits(new MemoryAttemptStore(), loadSettings({ LOGIN_ADDRESS_CONCURRENCY: '2' }), fakeClock().now);
    expect(limits.enter('10.0.0.1')).toBe(true);
    expect(limits.enter('::ffff:10.0.0.1')).toBe(true);
    expect(limits.enter('10.0.0.1')).toBe(false);
    expect(limits.enter('10.0.0.2')).toBe(true);
    limits.leave('10.0.0.1');
    expect(limits.enter('10.0.0.1')).toBe(true);
    expect(limits.enter('10.0.0.1')).toBe(false);
    expect(limits.enter('2001:db8:0:1::a')).toBe(true);
    expect(limits.enter('2001:db8:0:1::b')).toBe(true);
    expect(limits.enter('2001:db8:0:1:ffff::1')).toBe(false);
    expect(limits.enter('2001:db8:0:2::a')).toBe(true);
  });
});

describe('addressBucket', () => {
  it.each([
    ['10.1.2.3', '10.1.2.3'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::FFFF:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    // IPv4-mapped, however spelt: the IPv4 address (not one bucket for every IPv4 address so written).
    ['::ffff:c633:6409', '198.51.100.9'],
    ['0:0:0:0:0:ffff:198.51.100.9', '198.51.100.9'],
    ['0000:0000:0000:0000:0000:FFFF:C633:6409', '198.51.100.9'],
    // With a port, as some proxies write X-Forwarded-For: the address.
    ['198.51.100.8:40000', '198.51.100.8'],
    ['[2001:db8::1]:443', '2001:db8:0:0::/64'],
    ['[::ffff:198.51.100.8]:40000', '198.51.100.8'],
    ['unknown', 'unknown'],
  ])('%s -> %s', (address, bucket) => {
    expect(addressBucket(address)).toBe(bucket);
  });
});
