using System.Numerics;
using Lutra.Core.Threading;
using Lutra.Models.Blocks;

namespace Lutra.Models.Tests;

/// <summary>The tiled online-softmax attention against the scalar reference <see cref="KvCache.Attend"/>.</summary>
public class AttentionTests
{
    private static void Fill(Random rng, Span<float> x, float scale)
    {
        for (var i = 0; i < x.Length; i++)
            x[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
    }

    /// <summary>
    /// Fills a cache with <paramref name="length"/> random positions, then evaluates <paramref name="tokens"/> queries
    /// ending at the last position with both paths and compares every output value.
    /// </summary>
    private static void Compare(KvCacheType type, int heads, int kvHeads, int headDim, int length, int tokens, int threads, int context)
    {
        var rng = new Random(length * 31 + tokens * 7 + heads);
        var kvDim = kvHeads * headDim;
        var qDim = heads * headDim;
        var cache = new KvCache(2, context, kvDim, type);
        var k = new float[kvDim];
        var v = new float[kvDim];
        var maxV = 0f;
        for (var p = 0; p < length; p++)
        {
            Fill(rng, k, 2f);
            Fill(rng, v, 1f);
            foreach (var x in v)
                maxV = Math.Max(maxV, Math.Abs(x));
            cache.Store(1, p, k, v);
        }
        var q = new float[tokens * qDim];
        // Large queries make peaked softmaxes (max rescaling matters); small ones make flat ones.
        Fill(rng, q, length % 3 == 0 ? 6f : 1f);
        var start = length - tokens;
        var scale = 1f / MathF.Sqrt(headDim);

        var expected = new float[tokens * qDim];
        var scores = new float[context];
        for (var t = 0; t < tokens; t++)
        {
            for (var h = 0; h < heads; h++)
            {
                var o = t * qDim + h * headDim;
                cache.Attend(1, h / (heads / kvHeads), q.AsSpan(o, headDim), start + t + 1, scale, scores, expected.AsSpan(o, headDim));
            }
        }

        using var pool = new ComputePool(threads);
        var work = new AttentionWork(pool, heads, kvHeads, headDim, context);
        var actual = new float[tokens * qDim];
        work.Run(cache, 1, q, tokens, start, scale, actual);

        // F32: only the summation order differs. F16: the same f16 roundings of Q and of the normalized weights as
        // the reference; a last-bit difference (exp, summation order) can move a weight across an f16 rounding
        // boundary, one f16 ulp (2^-11 relative) of that weight. So: nearly every output within the tight bound, the
        // rare flips within one f16 ulp of the largest weight. (Rounding unnormalized weights instead, as an online
        // softmax would, moves most outputs by ~2e-4 and fails the count.)
        var tight = type == KvCacheType.F32 ? 2e-6f * maxV : 5e-5f * maxV;
        var loose = type == KvCacheType.F32 ? tight : 5e-4f * maxV;
        var beyondTight = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            var error = Math.Abs(actual[i] - expected[i]);
            if (error > tight)
                beyondTight++;
            Assert.True(error <= loose,
                $"{type} heads {heads}/{kvHeads} d={headDim} length {length} tokens {tokens} threads {threads}: [{i}] reference {expected[i]}, tiled {actual[i]}");
        }
        Assert.True(beyondTight <= Math.Max(1, actual.Length / 200),
            $"{type} heads {heads}/{kvHeads} d={headDim} length {length} tokens {tokens}: {beyondTight} of {actual.Length} outputs beyond {tight}");
    }

    [Theory]
    [InlineData(KvCacheType.F16, 4, 4, 16)]
    [InlineData(KvCacheType.F32, 4, 4, 16)]
    [InlineData(KvCacheType.F16, 8, 2, 8)]
    [InlineData(KvCacheType.F32, 6, 2, 24)]
    [InlineData(KvCacheType.F16, 4, 1, 64)]
    public void Decode_matches_the_reference_for_every_length(KvCacheType type, int heads, int kvHeads, int headDim)
    {
        // Lengths past several tiles and past the decode chunk (256), so chunk merging is covered.
        const int context = 600;
        for (var length = 1; length <= context; length += length < 80 ? 1 : 37)
            Compare(type, heads, kvHeads, headDim, length, 1, threads: 1, context);
        Compare(type, heads, kvHeads, headDim, context, 1, threads: 1, context);
    }

    [Theory]
    [InlineData(4, 4, 16)]
    [InlineData(8, 2, 8)]
    [InlineData(4, 1, 64)]
    [InlineData(8, 2, 20)]
    public void F16_decode_matches_the_reference_at_tile_and_chunk_boundaries(int heads, int kvHeads, int headDim)
    {
        // Decode keeps each chunk's scores between its two passes and widens only the K positions in use: lengths
        // around the widening step (16), the tile (64) and the chunk (256), on one thread and on two (parallel phases).
        const int context = 600;
        foreach (var length in new[] { 1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 511, 512, 513, 600 })
        {
            Compare(KvCacheType.F16, heads, kvHeads, headDim, length, 1, threads: 1, context);
            Compare(KvCacheType.F16, heads, kvHeads, headDim, length, 1, threads: 2, context);
        }
    }

    [Theory]
    [InlineData(KvCacheType.F16, 4, 4, 16)]
    [InlineData(KvCacheType.F32, 4, 2, 32)]
    [InlineData(KvCacheType.F16, 8, 2, 8)]
    [InlineData(KvCacheType.F16, 4, 1, 64)]
    public void Prefill_matches_the_reference_for_batches_and_start_positions(KvCacheType type, int heads, int kvHeads, int headDim)
    {
        const int context = 200;
        foreach (var (length, tokens) in new[] { (1, 1), (5, 5), (17, 17), (40, 3), (64, 64), (65, 33), (130, 70), (200, 16), (200, 200) })
            Compare(type, heads, kvHeads, headDim, length, tokens, threads: 1, context);
    }

    [Theory]
    [InlineData(1, 40)]
    [InlineData(40, 40)]
    [InlineData(1, 500)]
    public void Thread_count_does_not_change_the_result(int tokens, int length)
    {
        const int heads = 8, kvHeads = 2, headDim = 16, context = 512;
        var rng = new Random(5);
        var cache = new KvCache(1, context, kvHeads * headDim, KvCacheType.F16);
        var k = new float[kvHeads * headDim];
        var v = new float[kvHeads * headDim];
        for (var p = 0; p < length; p++)
        {
            Fill(rng, k, 1f);
            Fill(rng, v, 1f);
            cache.Store(0, p, k, v);
        }
        var q = new float[tokens * heads * headDim];
        Fill(rng, q, 3f);
        float[] Run(int threads)
        {
            using var pool = new ComputePool(threads);
            var output = new float[q.Length];
            new AttentionWork(pool, heads, kvHeads, headDim, context).Run(cache, 0, q, tokens, length - tokens, 0.25f, output);
            return output;
        }
        Assert.Equal(Run(1), Run(3));
    }

    [Theory]
    [InlineData(32, 8, 64)]
    [InlineData(8, 8, 64)]
    [InlineData(14, 2, 64)]
    [InlineData(8, 2, 128)]
    [InlineData(6, 1, 128)]
    public void F16_decode_widening_inside_the_loops_gives_the_tile_buffer_bits(int heads, int kvHeads, int headDim)
    {
        // FusedScores/FusedValues run the tile-buffer path's FMAs in the same order per output: the results must be
        // identical, at group sizes with and without a remainder of four rows, across tiles and decode chunks, on one
        // and two threads.
        const int context = 600;
        var rng = new Random(heads * 131 + headDim);
        var kvDim = kvHeads * headDim;
        var k = new float[kvDim];
        var v = new float[kvDim];
        var q = new float[heads * headDim];
        foreach (var length in new[] { 1, 17, 64, 65, 200, 256, 257, 600 })
        {
            var cache = new KvCache(1, context, kvDim, KvCacheType.F16);
            for (var p = 0; p < length; p++)
            {
                Fill(rng, k, 2f);
                Fill(rng, v, 1f);
                cache.Store(0, p, k, v);
            }
            Fill(rng, q, length % 2 == 0 ? 6f : 1f);
            foreach (var threads in new[] { 1, 2 })
            {
                using var pool = new ComputePool(threads);
                var fused = new float[q.Length];
                var buffered = new float[q.Length];
                new AttentionWork(pool, heads, kvHeads, headDim, context).Run(cache, 0, q, 1, length - 1, 0.125f, fused);
                new AttentionWork(pool, heads, kvHeads, headDim, context) { FusedDecode = false }.Run(cache, 0, q, 1, length - 1, 0.125f, buffered);
                Assert.Equal(buffered, fused);
            }
        }
    }

    [Fact]
    public void ExpNonPositive_is_within_two_ulps_of_MathF_Exp()
    {
        var width = Vector<float>.Count;
        var x = new float[width];
        for (var i = 0; i <= 2_000_000; i += width)
        {
            for (var l = 0; l < width; l++)
                x[l] = -(i + l) * 5e-5f; // 0 down to −100, past the underflow
            var e = AttentionWork.ExpNonPositive(new Vector<float>(x));
            for (var l = 0; l < width; l++)
            {
                var expected = MathF.Exp(x[l]);
                var ulps = Math.Abs(BitConverter.SingleToInt32Bits(expected) - BitConverter.SingleToInt32Bits(e[l]));
                Assert.True(ulps <= 2 || Math.Abs(expected - e[l]) < 1e-37f, $"exp({x[l]:R}) = {expected:R}, got {e[l]:R} ({ulps} ulps)");
            }
        }
    }
}
