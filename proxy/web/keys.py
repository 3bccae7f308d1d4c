"""Typed AppKey/RequestKey constants, apart so that app and handlers never import each other."""

from __future__ import annotations

import asyncio

import jinja2
from aiohttp import web

from proxy.cluster.files import PrimaryFiles
from proxy.cluster.follower import Follower
from proxy.cluster.primary import ReplicaBook
from proxy.cluster.snapshots import Snapshots
from proxy.config import Config
from proxy.hosted.auth import Auth, Identity
from proxy.hosted.descriptions import DescriptionRenderer
from proxy.hosted.search import SearchIndex
from proxy.hosted.toxresults import ToxResults
from proxy.hosted.uploads import Uploads
from proxy.indexes.registry import IndexRegistry
from proxy.indexes.store import IndexStore
from proxy.metrics import Metrics
from proxy.mirror.fetch import Fetcher
from proxy.mirror.upstream import UpstreamClient
from proxy.storage.blobs import BlobStore, LocalBlobStore
from proxy.storage.bucketkeeper import BucketKeeper
from proxy.storage.db import Database
from proxy.storage.eviction import CacheManager

CONFIG = web.AppKey("wheelwell.config", Config)
METRICS = web.AppKey("wheelwell.metrics", Metrics)
BLOBS = web.AppKey("wheelwell.blobs", LocalBlobStore)  #: this disk's blobs (the cache with s3)
#: where blobs are kept: BLOBS itself, or the object store with BLOBS as its disk cache
STORE: web.AppKey[BlobStore] = web.AppKey("wheelwell.store")
UPSTREAM = web.AppKey("wheelwell.upstream", UpstreamClient)
FETCHER = web.AppKey("wheelwell.fetcher", Fetcher)
INDEXES = web.AppKey("wheelwell.indexes", IndexRegistry)
INDEX_STORE = web.AppKey("wheelwell.index_store", IndexStore)
DB = web.AppKey("wheelwell.db", Database)
AUTH = web.AppKey("wheelwell.auth", Auth)
UPLOADS = web.AppKey("wheelwell.uploads", Uploads)
TOXRESULTS = web.AppKey("wheelwell.toxresults", ToxResults)
SEARCH = web.AppKey("wheelwell.search", SearchIndex)
CACHE = web.AppKey("wheelwell.cache", CacheManager)
#: with backend s3 on a primary or standalone server: the bucket's accounting
BUCKET = web.AppKey("wheelwell.bucket", BucketKeeper)
STARTED_AT = web.AppKey("wheelwell.started_at", float)
TEMPLATES = web.AppKey("wheelwell.templates", jinja2.Environment)
DESCRIPTIONS = web.AppKey("wheelwell.descriptions", DescriptionRenderer)
#: set when SIGTERM starts the shutdown: endless responses (the changelog stream) end at once
STOPPING = web.AppKey("wheelwell.stopping", asyncio.Event)
REPLICAS = web.AppKey("wheelwell.replicas", ReplicaBook)  #: on a primary
SNAPSHOTS = web.AppKey("wheelwell.snapshots", Snapshots)  #: on a primary
FOLLOWER = web.AppKey("wheelwell.follower", Follower)  #: on a replica
REPLICA_FILES = web.AppKey("wheelwell.replica_files", PrimaryFiles)  #: on a replica

REQUEST_ID = web.RequestKey("wheelwell.request_id", str)
CACHE_OUTCOME = web.RequestKey("wheelwell.cache_outcome", str)
#: the caller, set by the authz middleware (None: no credentials were sent)
IDENTITY: web.RequestKey[Identity | None] = web.RequestKey("wheelwell.identity")
