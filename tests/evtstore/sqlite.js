// evtstore's `knex` provider on SQLite (the `sqlite3` driver) for department.js.
// TARGET: {"path": "/path/to/file.db", "events": "table", "bookmarks": "table"}.
'use strict'

const knex = require('knex')
const knexProvider = require('evtstore/provider/knex')
const { main } = require('./department')

main(async ({ path, events, bookmarks }) => {
  const client = knex({ client: 'sqlite3', connection: { filename: path }, useNullAsDefault: true })
  await knexProvider.migrate({ client, events, bookmarks })
  const provider = knexProvider.createProvider({
    events: () => client(events),
    bookmarks: () => client(bookmarks),
  })
  return { provider, close: () => client.destroy() }
})
