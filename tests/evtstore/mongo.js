// The real evtstore (12.0.1, its `mongodb` provider) with the guide's department domain, driven
// by tests/evtstore_mongo.rs. Each command prints one JSON line.
//
//   node mongo.js migrate URL DB                      evtstore's migrate
//   node mongo.js write URL DB DEPARTMENTS MANAGERS   evtstore's migrate, commands, a handler run
//   node mongo.js read URL DB ID...                   evtstore's migrate, a handler run, loads, one command per id
//   node mongo.js race URL DB SECONDS WRITERS ID...   writers adding managers to shared departments
'use strict'

const { MongoClient } = require('mongodb')
const { createAggregate, createDomain, createCommands, CommandError, VersionError } = require('evtstore')
const mongoProvider = require('evtstore/provider/mongo')

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

async function open(url, db) {
  const client = await MongoClient.connect(url, { maxPoolSize: 10 })
  const database = client.db(db)
  const events = database.collection('events')
  const bookmarks = database.collection('bookmarks')
  await mongoProvider.migrate(events, bookmarks)
  const provider = mongoProvider.createProvider({ events, bookmarks })
  const { domain, createHandler } = createDomain({ provider }, { departments: department })
  const cmd = createCommands(domain.departments, {
    async create(c, agg) {
      if (agg.version) throw new CommandError('department already exists')
      // `description` and `performedBy` left undefined: the driver stores them as null.
      return { type: 'departmentCreated', tenantId: c.tenantId, name: c.name, description: undefined, dataContext: 'live', performedBy: undefined }
    },
    async addManager(c, agg) {
      if (!agg.version) throw new CommandError('department not found')
      if (agg.managers.includes(c.userPhone)) throw new CommandError('user is already a manager')
      return { type: 'departmentManagerAdded', userPhone: c.userPhone, performedBy: undefined }
    },
  })
  return { client, domain, createHandler, cmd, events }
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
  return { byType, handled: seen.length, seen, position: { t: position.t ?? position.high, i: position.i ?? position.low } }
}

async function migrate([url, db]) {
  const { client } = await open(url, db)
  await client.close()
  return { migrated: db }
}

async function write([url, db, departments, managers]) {
  const { client, createHandler, cmd } = await open(url, db)
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
  await client.close()
  return { commands, handled, byType, position }
}

async function read([url, db, ...ids]) {
  const { client, domain, createHandler, cmd } = await open(url, db)
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
  await client.close()
  return { handled, byType, seen, aggregates, commands, after }
}

async function race([url, db, seconds, writers, ...ids]) {
  const { client, cmd } = await open(url, db)
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
  await client.close()
  return counts
}

const [command, ...args] = process.argv.slice(2)
const commands = { migrate, write, read, race }
if (!commands[command]) {
  console.error(`usage: node mongo.js migrate|write|read|race ...`)
  process.exit(2)
}
commands[command](args).then(
  // Exits at once: evtstore's handlers keep timers that would hold the process open.
  (result) => process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0)),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
