// evtstore's `mongodb` provider for department.js. TARGET: {"url": "mongodb://...", "db": "name"}.
'use strict'

const { MongoClient } = require('mongodb')
const mongoProvider = require('evtstore/provider/mongo')
const { main } = require('./department')

main(async ({ url, db }) => {
  const client = await MongoClient.connect(url, { maxPoolSize: 10 })
  const database = client.db(db)
  const events = database.collection('events')
  const bookmarks = database.collection('bookmarks')
  await mongoProvider.migrate(events, bookmarks)
  return { provider: mongoProvider.createProvider({ events, bookmarks }), close: () => client.close() }
})
