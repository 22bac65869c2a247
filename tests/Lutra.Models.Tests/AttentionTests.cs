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
        // the reference; a float-order difference can move a weight across an f16 rounding boundary (one f16 ulp,
        // 2^-11 relative), which the F16 bound allows for a few weights.
        var tolerance = type == KvCacheType.F32 ? 2e-6f * maxV : 5e-5f * maxV;
        for (var i = 0; i < actual.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= tolerance,
                $"{type} heads {heads}/{kvHeads} d={headDim} length {length} tokens {tokens} threads {threads}: [{i}] reference {expected[i]}, tiled {actual[i]}");
        }
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

    [Fact]
    public void RoundToHalf_equals_the_Half_conversion_on_0_to_1()
    {
        var rng = new Random(3);
        var values = new float[4096];
        for (var i = 0; i < values.Length; i++)
        {
            // Uniform exponents from 2^-30 to 1, including f16 subnormals and exact ties.
            values[i] = (float)Math.Pow(2, -30 * rng.NextDouble());
        }
        values[0] = 0;
        values[1] = 1;
        values[2] = 6.103515625e-05f;         // smallest f16 normal
        values[3] = 5.9604645e-08f * 1.5f;    // a subnormal tie
        values[4] = 1f + 1f / 2048;           // a normal tie (rounds to even)
        for (var i = 0; i < values.Length; i += Vector<float>.Count)
        {
            var rounded = AttentionWork.RoundToHalf(new Vector<float>(values.AsSpan(i, Vector<float>.Count)));
            for (var l = 0; l < Vector<float>.Count; l++)
                Assert.Equal((float)(Half)values[i + l], rounded[l]);
        }
    }
}
