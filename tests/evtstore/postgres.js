// evtstore's PostgreSQL providers for department.js, on the driver TARGET names.
// TARGET: {"driver": "pg" | "postgres", "url": "postgres://...", "events": "table", "bookmarks": "table"}.
'use strict'

const { main } = require('./department')

main(async ({ driver, url, events, bookmarks }) => {
  if (driver === 'pg') {
    const { Pool } = require('pg')
    const pgProvider = require('evtstore/provider/pg')
    const client = new Pool({ connectionString: url, max: 10 })
    await pgProvider.migrate({ client, events, bookmarks })
    return { provider: pgProvider.createProvider({ client, events, bookmarks }), close: () => client.end() }
  }
  if (driver === 'postgres') {
    const postgres = require('postgres')
    const postgresProvider = require('evtstore/provider/postgres')
    const sql = postgres(url, { max: 10, onnotice: () => {} })
    // This provider's migrate fails once the tables exist (evtstore's own behaviour: a team runs
    // it once); "already exists" (42P07) is that case.
    await postgresProvider.migrate({ sql, events, bookmarks }).catch((error) => {
      if (error.code !== '42P07') throw error
    })
    return { provider: postgresProvider.createProvider({ sql, events, bookmarks }), close: () => sql.end() }
  }
  throw new Error(`unknown driver ${driver}: pg or postgres`)
})
