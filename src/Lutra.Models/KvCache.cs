using System.Runtime.InteropServices;
using Lutra.Core.Kernels;

namespace Lutra.Models;

/// <summary>Element type of the KV cache.</summary>
public enum KvCacheType
{
    /// <summary>llama.cpp's default: K and V rounded to f16, and Q and the softmax weights rounded to f16 for their matmuls.</summary>
    F16,

    /// <summary>Exact f32 cache; no rounding anywhere in attention.</summary>
    F32,
}

/// <summary>
/// Per-layer key/value cache of one generation context, allocated once. The layout serves the tiled attention
/// (<see cref="Blocks.AttentionWork"/>): K is stored in tiles of <see cref="Tile"/> positions, transposed within a
/// tile ([pos / 64][channel][pos % 64]), so a KV head's keys for one tile are one contiguous [head_dim][64] block
/// that scores 64 positions per vector pass; V is position-major ([pos][n_embd_v_gqa]), so a position's values
/// for a head are contiguous. llama.cpp keeps K position-major and V transposed; only the storage order differs,
/// the stored values (f16-rounded or exact) are the same.
/// </summary>
public sealed class KvCache
{
    /// <summary>Positions per K tile.</summary>
    public const int Tile = 64;

    private readonly Half[][]? _kHalf, _vHalf;
    private readonly float[][]? _kFloat, _vFloat;

    public KvCache(int layers, int capacity, int kvDim, KvCacheType type)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        KvDim = kvDim;
        Type = type;
        var size = checked((capacity + Tile - 1) / Tile * Tile * kvDim);
        if (type == KvCacheType.F16)
        {
            _kHalf = NewLayers<Half>(layers, size);
            _vHalf = NewLayers<Half>(layers, size);
        }
        else
        {
            _kFloat = NewLayers<float>(layers, size);
            _vFloat = NewLayers<float>(layers, size);
        }
    }

    /// <summary>Positions the cache can hold (the context size).</summary>
    public int Capacity { get; }

    public int KvDim { get; }

    public KvCacheType Type { get; }

    /// <summary>Index of K channel <paramref name="channel"/> at <paramref name="position"/> in a layer's K array.</summary>
    internal int KeyIndex(int position, int channel) => position / Tile * Tile * KvDim + channel * Tile + position % Tile;

    internal Half[] HalfKeys(int layer) => _kHalf![layer];

    internal Half[] HalfValues(int layer) => _vHalf![layer];

    internal float[] FloatKeys(int layer) => _kFloat![layer];

    internal float[] FloatValues(int layer) => _vFloat![layer];

    /// <summary>Every f16 bit pattern's f32 value.</summary>
    internal static float[] HalfTable => HalfToFloat.Value;

    /// <summary>Stores one position's K and V (each n_embd_k_gqa values), rounding to the cache type.</summary>
    public unsafe void Store(int layer, int position, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        if (k.Length < KvDim || v.Length < KvDim)
            throw new ArgumentException($"K and V rows need {KvDim} values");
        var key = KeyIndex(position, 0);
        if (_kHalf is not null)
        {
            // K is stored transposed (one position per tile column): converted into a stack row, then scattered.
            Span<ushort> kRow = KvDim <= 4096 ? stackalloc ushort[KvDim] : new ushort[KvDim];
            var kt = MemoryMarshal.Cast<Half, ushort>(_kHalf[layer].AsSpan());
            fixed (float* pk = k)
            fixed (float* pv = v)
            fixed (ushort* pr = kRow)
            fixed (Half* vRow = &_vHalf![layer][position * KvDim])
            {
                HalfRounding.ToHalf(pk, pr, KvDim);
                HalfRounding.ToHalf(pv, (ushort*)vRow, KvDim);
            }
            for (var i = 0; i < KvDim; i++)
                kt[key + i * Tile] = kRow[i];
        }
        else
        {
            var kt = _kFloat![layer];
            for (var i = 0; i < KvDim; i++)
                kt[key + i * Tile] = k[i];
            v[..KvDim].CopyTo(_vFloat![layer].AsSpan(position * KvDim, KvDim));
        }
    }

    /// <summary>
    /// The scalar reference for one query head against positions [0, <paramref name="length"/>) of KV head
    /// <paramref name="kvHead"/>: output = softmax(q·K / sqrt(d)) · V, with llama.cpp's roundings for the F16 cache
    /// (formats.md §5.4).
    /// </summary>
    /// <param name="scores">Scratch of at least <paramref name="length"/> floats.</param>
    public void Attend(int layer, int kvHead, ReadOnlySpan<float> q, int length, float scale, Span<float> scores, Span<float> output)
    {
        var headDim = q.Length;
        var offset = kvHead * headDim;
        var p = scores[..length];
        if (_kHalf is not null)
        {
            var k = _kHalf[layer];
            // Q is converted to f16 (the vec_dot_type of an F16 K) before KQ; so is P before KQV.
            Span<float> qh = stackalloc float[headDim];
            for (var d = 0; d < headDim; d++)
                qh[d] = (float)(Half)q[d];
            for (var j = 0; j < length; j++)
            {
                var s = 0f;
                for (var d = 0; d < headDim; d++)
                    s += qh[d] * (float)k[KeyIndex(j, offset + d)];
                p[j] = s;
            }
            Softmax(p, scale);
            for (var j = 0; j < length; j++)
                p[j] = (float)(Half)p[j];
            var v = _vHalf![layer];
            for (var d = 0; d < headDim; d++)
            {
                var o = 0f;
                for (var j = 0; j < length; j++)
                    o += p[j] * (float)v[j * KvDim + offset + d];
                output[d] = o;
            }
        }
        else
        {
            var k = _kFloat![layer];
            for (var j = 0; j < length; j++)
            {
                var s = 0f;
                for (var d = 0; d < headDim; d++)
                    s += q[d] * k[KeyIndex(j, offset + d)];
                p[j] = s;
            }
            Softmax(p, scale);
            var v = _vFloat![layer];
            for (var d = 0; d < headDim; d++)
            {
                var o = 0f;
                for (var j = 0; j < length; j++)
                    o += p[j] * v[j * KvDim + offset + d];
                output[d] = o;
            }
        }
    }

    /// <summary>ggml soft_max with scale: w = s·scale; e = exp(w − max); sum in double; p = e · (1/sum).</summary>
    private static void Softmax(Span<float> s, float scale)
    {
        var max = float.NegativeInfinity;
        for (var j = 0; j < s.Length; j++)
        {
            s[j] *= scale;
            if (s[j] > max)
                max = s[j];
        }
        var sum = 0.0;
        for (var j = 0; j < s.Length; j++)
        {
            var e = MathF.Exp(s[j] - max);
            s[j] = e;
            sum += e;
        }
        var inv = (float)(1.0 / sum);
        for (var j = 0; j < s.Length; j++)
            s[j] *= inv;
    }

    // Every f16 bit pattern's f32 value (ggml keeps the same table): a lookup beats converting per element.
    private static readonly Lazy<float[]> HalfToFloat = new(() =>
    {
        var table = new float[65536];
        for (var i = 0; i < table.Length; i++)
            table[i] = (float)BitConverter.UInt16BitsToHalf((ushort)i);
        return table;
    });

    private static T[][] NewLayers<T>(int layers, int size)
    {
        var a = new T[layers][];
        for (var l = 0; l < layers; l++)
            a[l] = new T[size];
        return a;
    }
}
