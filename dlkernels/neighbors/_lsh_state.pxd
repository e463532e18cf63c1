# The state the compiled queries of LSHIndex share: the bucket store and the
# hash family as raw pointers (filled by _lsh_query.pyx from the facade's
# arrays), and each thread's scratch buffers.

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t

cdef enum:
    # Rows read from buckets before they are deduplicated.
    RAW = 256
    # Probes whose directory slots and entries are fetched together.
    BATCH = 16
    # Queries whose bounds one pass of the exact scan computes per sketch row read.
    BLOCK = 8
    # Hash families.
    RANDOM = 0
    TREE = 1


cdef struct Store:
    Py_ssize_t n_tables
    Py_ssize_t dim
    bint l2                 # metric (else cosine)
    Py_ssize_t n_runs
    Py_ssize_t n_rows       # stored rows, live and removed
    Py_ssize_t stride       # row stride of entries (their capacity)
    Py_ssize_t dstride      # row stride of dirs
    const uint64_t *entries # (L, stride): fingerprint << 32 | row, sorted within each run
    const int64_t *run_starts
    const int32_t *dir_bits
    const int64_t *dir_offsets
    const uint32_t *dirs
    const uint8_t *alive
    const int64_t *row_ids
    const int64_t *seq      # insertion order of each row: ties rank by it
    const double *inv_norms # 1 / |x| (cosine), for the exact distances
    const uint8_t *sketch   # (n_rows, sketch_stride): SKETCH_HEADER bytes of float32, then codes
    Py_ssize_t sketch_stride
    Py_ssize_t s            # sketch dimensions
    const float *mean       # (dim,) subtracted before the sketch's directions
    const float *basis      # (s, dim) the sketch's directions, or NULL: the coordinates
    double mean_norm
    bint normalize          # cosine: sketches of x / |x|


cdef struct Family:
    int kind
    Py_ssize_t n_tables
    # random family
    bint l2
    int n_bits
    const double *planes    # (L*K, dim) hash projections
    const double *shifts    # (L*K,) l2 offsets, in units of the width
    double width
    const uint64_t *mult    # (L, K) l2 multipliers
    const int32_t *tmpl_pos # template sets of perturbation positions, flattened
    const int32_t *tmpl_off # (n_tmpl + 1,) set j is tmpl_pos[tmpl_off[j]:tmpl_off[j+1]]
    Py_ssize_t n_tmpl
    # k-means trees
    Py_ssize_t c1
    Py_ssize_t n_leaves     # per tree
    Py_ssize_t widest       # leaves of the largest cell
    Py_ssize_t p1           # coarse cells whose leaves are scored, per table
    Py_ssize_t max_offer    # leaves in the p1 largest cells of a tree, at most
    Py_ssize_t r            # dimensions the trees work in
    Py_ssize_t n_dim        # dimension of the vectors
    const float *mean       # (dim,)
    const float *basis      # (r, dim) principal directions
    const float *coarse     # (L, c1, r)
    const float *coarse_norms
    const float *fine       # (L, n_leaves, r)
    const float *fine_norms
    const int64_t *offsets  # (L, c1 + 1): cell a owns leaves offsets[a]:offsets[a + 1]
    bint normalize


cdef struct Probe:
    uint64_t key
    int32_t table


cdef struct Span:
    Py_ssize_t at           # directory index, then entry offset of the slot
    Py_ssize_t end
    uint32_t fingerprint


cdef struct Scratch:
    uint64_t *seen          # bitset over rows: candidates of the current query
    int32_t *cand
    Probe *probes
    double *set_score       # scores of the probes on offer, over all tables
    int64_t *set_id
    double *score           # random: (L, P) single-perturbation scores, ascending per table
    int32_t *coord          # (L, P) the bit / component each position perturbs
    int8_t *step            # (L, P) l2: the +-1 step of that position
    uint64_t *base          # (L,) the query's own code (cosine) or linear sum (l2)
    Span *spans             # (BATCH * n_runs,)
    int32_t *raw            # (RAW,) rows read from buckets, before deduplication
    double *proj            # (L*K,) the query's projections
    float *xf               # (r + dim + max(c1, widest),) tree input, buffer, centre scores
    float *cscore           # (c1,) coarse scores
    int64_t *cells          # (c1,) coarse cells by score
    double *cell_score
    int16_t *q16            # (s,) the query's sketch coordinates quantized
    double qp[9]            # the prepared query (see prepare)
    double *qd              # (dim,) the query in float64
    float *qz               # (dim + s,) the query less the mean, then its sketch coordinates
    float *sk               # (4, n_rows) what bounds each candidate (see sketch_bounds)
    double *short_key       # (k + SHORTLIST,) a heap of the smallest bounds ...
    int32_t *short_pos      # ... and the candidates' positions
    double *best_key        # (k,) a heap of the k best distances so far ...
    int64_t *best_tag       # ... and their rows' tags (see row_tag in _lsh_query.pyx)
    Py_ssize_t n_best       # how many best holds
    Py_ssize_t n_used       # probes gather looked up (per-thread: passed by address)
    double *tmp             # (2 * n_bits,) sort keys
    # exact scan only: a block of BLOCK queries
    int16_t *block_q16      # (BLOCK, s)
    double block_qp[BLOCK][9]
    double *block_key[BLOCK]    # (k,) each: best_key and best_tag of each query
    int64_t *block_tag[BLOCK]
    Py_ssize_t block_size[BLOCK]
    uint64_t *block_seen    # (BLOCK, words): rows already in each heap
