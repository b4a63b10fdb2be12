// The real evtstore (12.0.1) with the guide's department domain, on any of its providers:
// `mongo.js` and `postgres.js` say how to open their store and hand over to `main` here. Each
// command prints one JSON line; TARGET is a JSON object that the store script reads.
//
//   node STORE.js migrate TARGET                      evtstore's migrate
//   node STORE.js write TARGET DEPARTMENTS MANAGERS   evtstore's migrate, commands, a handler run
//   node STORE.js read TARGET ID...                   evtstore's migrate, a handler run, loads, one command per id
//   node STORE.js race TARGET SECONDS WRITERS ID...   writers adding managers to shared departments
'use strict'

const { createAggregate, createDomain, createCommands, CommandError, VersionError } = require('evtstore')

const STREAM = 'departments'

// The guide's department: state, fold, commands (types/department.ts, command/department.ts).
const department = createAggregate({
  stream: STREAM,
  create: () => ({ tenantId: '', name: '', managers: [], deleted: false }),
  fold: (ev, prev) => {
    switch (ev.type) {
      case 'departmentCreated':
        return { tenantId: ev.tenantId, name: ev.name, managers: [] }
      case 'departmentUpdated':
        return { name: ev.name ?? prev.name }
      case 'departmentManagerAdded':
        return { managers: [...prev.managers, ev.userPhone] }
      case 'departmentManagerRemoved':
        return { managers: prev.managers.filter((p) => p !== ev.userPhone) }
      case 'departmentDeleted':
        return { deleted: true }
    }
  },
})

// The domain over the provider that `openStore(target)` gives: `{provider, close}`.
async function open(openStore, target) {
  const { provider, close } = await openStore(JSON.parse(target))
  const { domain, createHandler } = createDomain({ provider }, { departments: department })
  const cmd = createCommands(domain.departments, {
    async create(c, agg) {
      if (agg.version) throw new CommandError('department already exists')
      // `description` and `performedBy` left undefined: MongoDB stores them as null.
      return { type: 'departmentCreated', tenantId: c.tenantId, name: c.name, description: undefined, dataContext: 'live', performedBy: undefined }
    },
    async addManager(c, agg) {
      if (!agg.version) throw new CommandError('department not found')
      if (agg.managers.includes(c.userPhone)) throw new CommandError('user is already a manager')
      return { type: 'departmentManagerAdded', userPhone: c.userPhone, performedBy: undefined }
    },
  })
  return { close, domain, createHandler, cmd }
}

// A handler over the departments stream counting events by type and aggregate.
async function handleAll(createHandler, bookmark) {
  const handler = createHandler(bookmark, [STREAM])
  const byType = {}
  const seen = []
  for (const type of ['departmentCreated', 'departmentUpdated', 'departmentManagerAdded', 'departmentManagerRemoved', 'departmentDeleted']) {
    handler.handle(STREAM, type, (id, ev, meta) => {
      byType[type] = (byType[type] || 0) + 1
      seen.push(`${id}/${meta.version}`)
    })
  }
  await handler.runOnce()
  const position = await handler.getPosition()
  // MongoDB's position is a Timestamp; the SQL providers' a number (or a bigint's string).
  const stored = typeof position === 'object' ? { t: position.t ?? position.high, i: position.i ?? position.low } : Number(position)
  return { byType, handled: seen.length, seen, position: stored }
}

async function migrate(openStore, [target]) {
  const { close } = await open(openStore, target)
  await close()
  return { migrated: JSON.parse(target) }
}

async function write(openStore, [target, departments, managers]) {
  const { close, createHandler, cmd } = await open(openStore, target)
  let commands = 0
  for (let d = 0; d < Number(departments); d++) {
    const id = `dept-${d}`
    await cmd.create(id, { tenantId: 'tenant-1', name: `Department ${d}` })
    commands++
    for (let m = 0; m < Number(managers); m++) {
      await cmd.addManager(id, { userPhone: `+1555000${d}${m}` })
      commands++
    }
  }
  const { byType, handled, position } = await handleAll(createHandler, 'evtstore-model')
  await close()
  return { commands, handled, byType, position }
}

async function read(openStore, [target, ...ids]) {
  const { close, domain, createHandler, cmd } = await open(openStore, target)
  const { byType, handled, seen } = await handleAll(createHandler, 'evtstore-reader')
  const aggregates = {}
  for (const id of ids) {
    const agg = await domain.departments.getAggregate(id)
    aggregates[id] = { version: agg.version, managers: agg.managers, name: agg.name }
  }
  let commands = 0
  for (const id of ids) {
    await cmd.addManager(id, { userPhone: `+1999${id}` })
    commands++
  }
  const after = {}
  for (const id of ids) after[id] = (await domain.departments.getAggregate(id)).version
  await close()
  return { handled, byType, seen, aggregates, commands, after }
}

async function race(openStore, [target, seconds, writers, ...ids]) {
  const { close, cmd } = await open(openStore, target)
  const until = Date.now() + Number(seconds) * 1000
  const counts = { ok: 0, conflicts: 0, rejected: 0, failed: 0, errors: [] }
  const writer = async (w) => {
    let n = 0
    while (Date.now() < until) {
      const id = ids[(w + n) % ids.length]
      try {
        await cmd.addManager(id, { userPhone: `+1777${process.pid}-${w}-${n}` })
        counts.ok++
      } catch (ex) {
        if (ex instanceof VersionError) counts.conflicts++
        else if (ex instanceof CommandError) counts.rejected++
        else {
          counts.failed++
          if (counts.errors.length < 5) counts.errors.push(String(ex))
        }
      }
      n++
    }
  }
  await Promise.all(Array.from({ length: Number(writers) }, (_, w) => writer(w)))
  await close()
  return counts
}

// Runs the command of the process's arguments on the store `openStore` opens.
function main(openStore) {
  const [command, ...args] = process.argv.slice(2)
  const commands = { migrate, write, read, race }
  if (!commands[command]) {
    console.error(`usage: node STORE.js migrate|write|read|race TARGET ...`)
    process.exit(2)
  }
  commands[command](openStore, args).then(
    // Exits at once: evtstore's handlers keep timers that would hold the process open.
    (result) => process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0)),
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}

module.exports = { main }
