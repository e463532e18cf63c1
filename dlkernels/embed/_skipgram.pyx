"""Compiled core of dlkernels.embed.SkipGram: word2vec skip-gram training.

Training is lock-free parallel SGD ("hogwild", Recht et al. 2011): threads take
fixed chunks of whole sentences and update the shared float32 tables without
locks. Each chunk draws its subsampling coins, window sizes and negatives from
its own counter-based stream (dlkernels/_lib/_random.pxd), so the draws are the same
at any thread count; with one thread the whole run is exactly reproducible.

The update for one centre word follows Ji et al. ("Parallelizing Word2Vec in
Shared and Distributed Memory", 2016): its negatives are drawn once and shared by
every context word of its window, so the window's updates form one small block
(context rows x [centre + negatives] rows) whose output rows stay in cache,
instead of one cache-missing negative row per (context, centre) pair as in the
original word2vec. Hierarchical softmax uses the same block, with the inner nodes
of the centre word's Huffman path as the output rows.
"""

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc

from dlkernels._lib._openmp cimport threads_for
from dlkernels._lib._random cimport next_below, next_double, stream_start
from dlkernels._lib._alias_table cimport AliasEntry, alias_draw

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    /* Sigmoid and log-sigmoid from tables over [-FDL_SIG_MAX, FDL_SIG_MAX], as in
       word2vec: exp() per (row, row) pair would cost as much as a 128-d dot product.
       Beyond the range the gradient is clipped to the table's end values (about
       3e-4 from 0 or 1), not dropped. */
    #define FDL_SIG_MAX 8.0f
    #define FDL_SIG_SIZE 2048
    static float fdl_sig_table[FDL_SIG_SIZE + 1];
    static float fdl_logsig_table[FDL_SIG_SIZE + 1];

    static void fdl_init_tables(void) {
        for (int i = 0; i <= FDL_SIG_SIZE; i++) {
            double x = (2.0 * i / FDL_SIG_SIZE - 1.0) * FDL_SIG_MAX;
            fdl_sig_table[i] = (float)(1.0 / (1.0 + exp(-x)));
            fdl_logsig_table[i] = (float)(-log1p(exp(-x)));
        }
    }

    /* Written so that a NaN (every comparison false) takes an end of the table
       instead of an index computed from it: the cast of a NaN to int is
       undefined and read far outside the table. */
    static inline int fdl_sig_index(float x) {
        if (x > -FDL_SIG_MAX && x < FDL_SIG_MAX)
            return (int)((x + FDL_SIG_MAX) * (FDL_SIG_SIZE / (2.0f * FDL_SIG_MAX)) + 0.5f);
        return x < 0.0f ? 0 : FDL_SIG_SIZE;
    }

    /* -log(sigmoid(z)): from the table inside the range, its asymptotes outside
       (a NaN stays NaN, so that the caller sees training diverge). */
    static inline float fdl_neg_logsig(float z) {
        if (z != z) return z;
        if (z >= FDL_SIG_MAX) return 0.0f;
        if (z <= -FDL_SIG_MAX) return -z;
        return -fdl_logsig_table[fdl_sig_index(z)];
    }

    /* 8-float vectors of GCC and clang (SSE pairs in the baseline build, one AVX
       register in the x86-64-v3 clone below). Loops over plain floats with the
       same shape were left scalar or spilled to the stack by the compiler: a
       float sum may not be reassociated without -ffast-math. Unaligned loads
       (aligned(4)); other compilers take the scalar loops. */
    #if defined(__GNUC__) || defined(__clang__)
        #define FDL_VECTOR 1
        typedef float fdl_v8 __attribute__((vector_size(32), aligned(4), may_alias));
        #define FDL_LOAD(p) (*(const fdl_v8 *)(p))
        #define FDL_STORE(p, v) (*(fdl_v8 *)(p) = (v))
    #else
        #define FDL_VECTOR 0
    #endif

    /* Dot product; four vector accumulators so consecutive multiply-adds do not
       wait on each other. */
    static inline float fdl_dot(const float *a, const float *b, int n) {
        int i = 0;
        float s = 0.0f;
    #if FDL_VECTOR
        fdl_v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (; i + 32 <= n; i += 32) {
            a0 += FDL_LOAD(a + i) * FDL_LOAD(b + i);
            a1 += FDL_LOAD(a + i + 8) * FDL_LOAD(b + i + 8);
            a2 += FDL_LOAD(a + i + 16) * FDL_LOAD(b + i + 16);
            a3 += FDL_LOAD(a + i + 24) * FDL_LOAD(b + i + 24);
        }
        for (; i + 8 <= n; i += 8) a0 += FDL_LOAD(a + i) * FDL_LOAD(b + i);
        a0 = (a0 + a1) + (a2 + a3);
        s = ((a0[0] + a0[4]) + (a0[1] + a0[5])) + ((a0[2] + a0[6]) + (a0[3] + a0[7]));
    #endif
        for (; i < n; i++) s += a[i] * b[i];
        return s;
    }

    /* y (+)= sum_k c[k * c_stride] * rows[k], 32 lanes at a time: each part of y
       is read and written once and its sums stay in registers across the m rows
       (a row-by-row axpy would store and reload y m times). */
    static inline void fdl_combine(float *y, const float *const *rows, const float *c,
                                   int c_stride, int m, int dim, int accumulate) {
        int i = 0;
    #if FDL_VECTOR
        const fdl_v8 zero = {0};
        for (; i + 32 <= dim; i += 32) {
            fdl_v8 s0 = zero, s1 = zero, s2 = zero, s3 = zero;
            if (accumulate) {
                s0 = FDL_LOAD(y + i); s1 = FDL_LOAD(y + i + 8);
                s2 = FDL_LOAD(y + i + 16); s3 = FDL_LOAD(y + i + 24);
            }
            for (int k = 0; k < m; k++) {
                const fdl_v8 ck = zero + c[k * c_stride];
                const float *r = rows[k] + i;
                s0 += ck * FDL_LOAD(r); s1 += ck * FDL_LOAD(r + 8);
                s2 += ck * FDL_LOAD(r + 16); s3 += ck * FDL_LOAD(r + 24);
            }
            FDL_STORE(y + i, s0); FDL_STORE(y + i + 8, s1);
            FDL_STORE(y + i + 16, s2); FDL_STORE(y + i + 24, s3);
        }
        for (; i + 8 <= dim; i += 8) {
            fdl_v8 s0 = accumulate ? FDL_LOAD(y + i) : zero;
            for (int k = 0; k < m; k++) s0 += (zero + c[k * c_stride]) * FDL_LOAD(rows[k] + i);
            FDL_STORE(y + i, s0);
        }
    #endif
        for (; i < dim; i++) {
            float s = accumulate ? y[i] : 0.0f;
            for (int k = 0; k < m; k++) s += c[k * c_stride] * rows[k][i];
            y[i] = s;
        }
    }

    /* x86-64 wheels are built for the baseline (SSE2); the block below is the whole
       hot loop, so GCC compiles it twice and picks the AVX2+FMA copy at load time
       where the CPU has it (function multi-versioning, an ifunc on glibc). */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
        #define FDL_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
    #else
        #define FDL_CLONES
    #endif

    /* The most context words (2 * window) and targets a block takes at once;
       larger windows or longer Huffman codes are cut into several blocks. */
    #define FDL_BLOCK_MAX 64

    /* One centre word: n_ctx input rows syn0[ctx[j]] against n_t output rows
       out[tgt[k]] with labels lab[k] (1 for the true target, 0 for noise);
       n_ctx, n_t <= FDL_BLOCK_MAX. g (n_ctx * n_t) and delta (n_ctx * dim) are
       scratch. Every gradient is computed from the rows as they were on entry,
       then both sides are updated. Returns the block's summed loss
       -log sigmoid(+-dot). */
    FDL_CLONES
    static double fdl_block(float *syn0, float *out, int dim,
                            const int32_t *ctx, int n_ctx,
                            const int32_t *tgt, const float *lab, int n_t,
                            float alpha, float *restrict g, float *restrict delta) {
        const float *in_rows[FDL_BLOCK_MAX], *out_rows[FDL_BLOCK_MAX];
        double loss = 0.0;
        for (int j = 0; j < n_ctx; j++) in_rows[j] = syn0 + (int64_t)ctx[j] * dim;
        for (int k = 0; k < n_t; k++) out_rows[k] = out + (int64_t)tgt[k] * dim;
        for (int j = 0; j < n_ctx; j++) {
            for (int k = 0; k < n_t; k++) {
                float f = fdl_dot(in_rows[j], out_rows[k], dim);
                loss += fdl_neg_logsig(lab[k] > 0.5f ? f : -f);
                /* A NaN dot (the rows overflowed: alpha far too large) updates
                   nothing more; the NaN loss tells the caller. */
                g[j * n_t + k] = f == f ? (lab[k] - fdl_sig_table[fdl_sig_index(f)]) * alpha : 0.0f;
            }
        }
        /* Input gradients from the old output rows, then the output rows from the
           old input rows, then the inputs. */
        for (int j = 0; j < n_ctx; j++)
            fdl_combine(delta + (int64_t)j * dim, out_rows, g + j * n_t, 1, n_t, dim, 0);
        for (int k = 0; k < n_t; k++)
            fdl_combine((float *)out_rows[k], in_rows, g + k, n_t, n_ctx, dim, 1);
        for (int j = 0; j < n_ctx; j++) {
            float *restrict x = (float *)in_rows[j];
            const float *restrict d = delta + (int64_t)j * dim;
            for (int i = 0; i < dim; i++) x[i] += d[i];
        }
        return loss;
    }
    """
    void init_tables "fdl_init_tables"() noexcept nogil
    double block "fdl_block"(float *syn0, float *out, int dim, const int32_t *ctx, int n_ctx,
                             const int32_t *tgt, const float *lab, int n_t, float alpha,
                             float *g, float *delta) noexcept nogil
    int BLOCK_MAX "FDL_BLOCK_MAX"

init_tables()


cdef struct Model:
    # Everything one chunk reads or writes, passed by pointer into the nogil loop.
    float *syn0
    float *syn1neg
    float *syn1
    const int32_t *tokens
    const int64_t *offsets
    const float *keep
    const AliasEntry *table
    uint64_t n_table
    const int32_t *paths
    const float *path_labels
    const int32_t *code_len
    int max_code
    int dim
    int window
    int negative
    bint hs
    double alpha
    double min_alpha
    double words_before
    double words_all
    int64_t max_len
    uint64_t key


cdef inline double train_blocks(float *syn0, float *out, int dim, const int32_t *ctx, int n_ctx,
                               const int32_t *tgt, const float *lab, int n_t, float alpha,
                               float *g, float *delta) noexcept nogil:
    # A window wider than 32 or a Huffman code longer than BLOCK_MAX (adversarial
    # counts) is trained as several blocks, one after the other.
    cdef int j0 = 0, k0
    cdef double loss = 0.0
    while j0 < n_ctx:
        k0 = 0
        while k0 < n_t:
            loss += block(syn0, out, dim, ctx + j0, min(BLOCK_MAX, n_ctx - j0), tgt + k0,
                          lab + k0, min(BLOCK_MAX, n_t - k0), alpha, g, delta)
            k0 += BLOCK_MAX
        j0 += BLOCK_MAX
    return loss


cdef void train_chunk(const Model *m, Py_ssize_t sent_start, Py_ssize_t sent_stop,
                      uint64_t stream, double *loss_out, int64_t *pairs_out,
                      int64_t *words_out) noexcept nogil:
    cdef uint64_t state = stream_start(m.key, stream)
    cdef int32_t *sen = <int32_t *> malloc(max(m.max_len, 1) * sizeof(int32_t))
    cdef int32_t *ctx = <int32_t *> malloc(2 * m.window * sizeof(int32_t))
    cdef int32_t *tgt = <int32_t *> malloc((m.negative + 1) * sizeof(int32_t))
    cdef float *lab = <float *> malloc((m.negative + 1) * sizeof(float))
    cdef float *g = <float *> malloc(BLOCK_MAX * BLOCK_MAX * sizeof(float))
    cdef float *delta = <float *> malloc(BLOCK_MAX * m.dim * sizeof(float))
    cdef Py_ssize_t s, i, j, n, lo, hi
    cdef int64_t start, stop, pairs = 0, words = 0
    cdef int32_t w, d
    cdef int nc, nt, k, ws
    cdef float keep
    cdef double lr, loss = 0.0
    if sen == NULL or ctx == NULL or tgt == NULL or lab == NULL or g == NULL or delta == NULL:
        # Out of memory in a worker: report it through a pair count of -1 (the
        # facade raises MemoryError; a NaN loss means diverged training instead).
        loss_out[0] = 0.0
        pairs_out[0] = -1
        words_out[0] = 0
        free(sen); free(ctx); free(tgt); free(lab); free(g); free(delta)
        return
    lab[0] = 1.0
    for k in range(1, m.negative + 1):
        lab[k] = 0.0
    for s in range(sent_start, sent_stop):
        start = m.offsets[s]
        stop = m.offsets[s + 1]
        # Subsampling (Mikolov et al. 2013): keep each occurrence with its word's
        # precomputed probability; words kept for sure cost no random number.
        n = 0
        for i in range(start, stop):
            w = m.tokens[i]
            keep = m.keep[w]
            if keep >= 1.0 or next_double(&state) < keep:
                sen[n] = w
                n += 1
        words += n
        # Linear decay by corpus position, not by wall-clock progress: the rate of
        # a sentence does not depend on which thread reached it first.
        lr = m.alpha - (m.alpha - m.min_alpha) * (m.words_before + start) / m.words_all
        if lr < m.min_alpha:
            lr = m.min_alpha
        for i in range(n):
            # word2vec's reduced window: a size in [1, window], so near words count more.
            ws = m.window - <int> next_below(&state, <uint64_t> m.window)
            lo = max(<Py_ssize_t> 0, i - ws)
            hi = min(n, i + ws + 1)
            nc = 0
            for j in range(lo, hi):
                if j != i:
                    ctx[nc] = sen[j]
                    nc += 1
            if nc == 0:
                continue
            w = sen[i]
            pairs += nc
            if m.negative > 0:
                tgt[0] = w
                nt = 1
                for k in range(m.negative):
                    d = <int32_t> alias_draw(m.table, m.n_table, &state)
                    if d != w:  # a "negative" equal to the target is skipped, as in word2vec
                        tgt[nt] = d
                        nt += 1
                loss += train_blocks(m.syn0, m.syn1neg, m.dim, ctx, nc, tgt, lab, nt, <float> lr, g, delta)
            if m.hs and m.code_len[w] > 0:
                loss += train_blocks(m.syn0, m.syn1, m.dim, ctx, nc,
                              m.paths + <int64_t> w * m.max_code,
                              m.path_labels + <int64_t> w * m.max_code,
                              m.code_len[w], <float> lr, g, delta)
    loss_out[0] = loss
    pairs_out[0] = pairs
    words_out[0] = words
    free(sen); free(ctx); free(tgt); free(lab); free(g); free(delta)


def train(float[:, ::1] syn0, float[:, ::1] syn1neg, float[:, ::1] syn1,
          const int32_t[::1] tokens, const int64_t[::1] offsets,
          const int64_t[::1] chunk_bounds, Py_ssize_t chunk_start, Py_ssize_t chunk_stop,
          const float[::1] keep, const AliasEntry[::1] table,
          const int32_t[:, ::1] paths, const float[:, ::1] path_labels,
          const int32_t[::1] code_len,
          int window, int negative, bint hs, double alpha, double min_alpha,
          double words_before, double words_all, int64_t max_len,
          uint64_t key, uint64_t stream_base,
          double[::1] chunk_loss, int64_t[::1] chunk_pairs, int64_t[::1] chunk_words,
          int n_threads):
    """Train on chunks ``[chunk_start, chunk_stop)``; chunk ``c`` holds sentences
    ``chunk_bounds[c]:chunk_bounds[c + 1]`` and draws from stream
    ``stream_base + c``. Its loss, (context, centre) pair count and kept-word count
    go to ``chunk_loss[c]``, ``chunk_pairs[c]`` and ``chunk_words[c]``.

    The caller has checked every id against the tables' shapes: ``tokens`` in
    ``[0, vocab)``, ``paths`` rows in ``[0, syn1.shape[0])``, lengths in range.
    """
    cdef Model m
    cdef Py_ssize_t c, n_chunks = chunk_stop - chunk_start
    if n_chunks <= 0:
        return
    m.syn0 = &syn0[0, 0]
    m.syn1neg = &syn1neg[0, 0]
    m.syn1 = &syn1[0, 0]
    m.tokens = &tokens[0]
    m.offsets = &offsets[0]
    m.keep = &keep[0]
    m.table = &table[0]
    m.n_table = table.shape[0]
    m.paths = &paths[0, 0]
    m.path_labels = &path_labels[0, 0]
    m.code_len = &code_len[0]
    m.max_code = paths.shape[1]
    m.dim = syn0.shape[1]
    m.window = window
    m.negative = negative
    m.hs = hs
    m.alpha = alpha
    m.min_alpha = min_alpha
    m.words_before = words_before
    m.words_all = words_all
    m.max_len = max_len
    m.key = key
    # Dynamic schedule: sentences differ in length and subsampling, and which
    # thread runs a chunk changes none of its random draws.
    for c in prange(chunk_start, chunk_stop, nogil=True, schedule="dynamic", chunksize=1,
                    num_threads=threads_for(n_threads, n_chunks, 1)):
        train_chunk(&m, chunk_bounds[c], chunk_bounds[c + 1], stream_base + <uint64_t> c,
                    &chunk_loss[c], &chunk_pairs[c], &chunk_words[c])
