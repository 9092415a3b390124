/**
 * What the service's main thread holds for a live catalog of 1M items (src/serve/catalog.ts), and what it costs the
 * garbage collector: the JS heap and the array buffers it adds, the CPU of a full collection (median of 5, process
 * CPU, so the collector's helper threads count), and the CPU of one id lookup (historyIndex). The reference measured
 * in the same run is the main part of what the catalog held before its id table: the id array and a Map from each id
 * to an object per item (the service also kept a Set of the same ids and a second id array: not counted); and an
 * empty heap, the collection's floor.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { LiveCatalog } from '../src/serve/catalog.js';
import type { Benchmark } from './index.js';

const ITEMS = 1_000_000;
const LOOKUPS = 2_000_000;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Heap and array buffers (MB) after full collections, and the median CPU (ms) of 5 more. */
function settle(): { heapMb: number; buffersMb: number; fullGcMs: number } {
  for (let i = 0; i < 3; i++) gc();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = cpuMs();
    gc();
    times.push(cpuMs() - start);
  }
  times.sort((a, b) => a - b);
  const memory = process.memoryUsage();
  return { heapMb: memory.heapUsed / 1e6, buffersMb: memory.arrayBuffers / 1e6, fullGcMs: times[2] };
}

/** CPU (ns) per lookup of ids drawn in a fixed scattered order. */
function lookupNs(ids: readonly string[], find: (id: string) => number | undefined): number {
  let found = 0;
  const start = cpuMs();
  for (let i = 0; i < LOOKUPS; i++) if (find(ids[1 + ((i * 7919) % (ids.length - 1))]) !== undefined) found++;
  const ns = ((cpuMs() - start) * 1e6) / LOOKUPS;
  if (found !== LOOKUPS) throw new Error(`catalog-heap: ${LOOKUPS - found} ids not found`);
  return ns;
}

export const benchmark: Benchmark = {
  name: 'catalog-heap',
  async run() {
    // Fresh strings per structure (as the service parsed them from the manifest), dropped with it; the lookups use
    // another copy (as requests bring their own strings), made after the heap and collection are measured.
    const makeIds = () => ['', ...Array.from({ length: ITEMS }, (_, i) => `i${(i * 7_368_787) % 9_999_991}`)];
    const empty = settle();
    // The Map and its ids live only in this function: gone when it returns.
    const measureMap = () => {
      const ids = makeIds();
      const map = new Map<string, { index: number; added: boolean }>();
      for (let i = 1; i < ids.length; i++) map.set(ids[i], { index: i, added: false });
      return { ...settle(), lookupNs: lookupNs(makeIds(), (id) => map.get(id)?.index) };
    };
    const withMap = measureMap();
    const mapLookupNs = withMap.lookupNs;
    settle();
    const catalog = ((): LiveCatalog => new LiveCatalog(makeIds(), ITEMS))(); // the ids array is not kept
    const withCatalog = settle();
    const catalogLookupNs = lookupNs(makeIds(), (id) => catalog.historyIndex(id));
    const mb = (x: number) => x.toFixed(1);
    console.log(`${ITEMS.toLocaleString('en-US')} items (ids of 7 to 8 characters):`);
    console.log(
      `  Map of ids -> object per item, + id array (before): heap +${mb(withMap.heapMb - empty.heapMb)} MB, ` +
        `full GC ${withMap.fullGcMs.toFixed(1)} ms CPU, lookup ${mapLookupNs.toFixed(0)} ns`,
    );
    console.log(
      `  LiveCatalog (id table): heap +${mb(withCatalog.heapMb - empty.heapMb)} MB, array buffers ` +
        `${mb(withCatalog.buffersMb - empty.buffersMb)} MB (byteSize ${mb(catalog.byteSize / 1e6)} MB), full GC ` +
        `${withCatalog.fullGcMs.toFixed(1)} ms CPU, lookup ${catalogLookupNs.toFixed(0)} ns`,
    );
    console.log(`  empty heap: full GC ${empty.fullGcMs.toFixed(1)} ms CPU`);
    return {
      catalog_heap_mb_1m: +(withCatalog.heapMb - empty.heapMb).toFixed(1),
      catalog_buffers_mb_1m: +(withCatalog.buffersMb - empty.buffersMb).toFixed(1),
      catalog_full_gc_ms_1m: +withCatalog.fullGcMs.toFixed(1),
      catalog_lookup_ns_1m: +catalogLookupNs.toFixed(0),
      map_heap_mb_1m: +(withMap.heapMb - empty.heapMb).toFixed(1),
      map_full_gc_ms_1m: +withMap.fullGcMs.toFixed(1),
      map_lookup_ns_1m: +mapLookupNs.toFixed(0),
      empty_full_gc_ms: +empty.fullGcMs.toFixed(1),
      full_gc_ratio_map_over_catalog: +(withMap.fullGcMs / withCatalog.fullGcMs).toFixed(1),
    };
  },
};
