using System.Runtime.Intrinsics;
using Lutra.Core.Kernels;

namespace Lutra.Models.Blocks;

/// <summary>
/// Rotary position embedding as ggml computes it (formats.md §5.3): per-pair angles from an iterative
/// theta, optional rope_freqs divisors, linear or YaRN scaling.
/// </summary>
public sealed class Rope
{
    private const float BetaFast = 32f;
    private const float BetaSlow = 1f;

    private readonly int _dims;                 // n_rot
    private readonly RopeKind _kind;
    private readonly float _thetaScale;         // freq_base^(-2/n_rot)
    private readonly float _freqScale;
    private readonly float _extFactor;          // 0 unless YaRN
    private readonly float _attnFactor;
    private readonly float _corr0, _corr1;      // YaRN ramp bounds
    private readonly float[]? _freqDivisors;    // rope_freqs: [n_rot/2]

    public Rope(HyperParameters hp, float[]? freqDivisors)
    {
        _dims = hp.RopeDimensions;
        _kind = hp.Architecture.Rope;
        _thetaScale = MathF.Pow(hp.RopeFreqBase, -2.0f / _dims);
        _freqScale = hp.RopeFreqScale;
        _extFactor = hp.RopeScaling == RopeScaling.Yarn ? 1f : 0f;
        _attnFactor = hp.RopeAttnFactor;
        _freqDivisors = freqDivisors;
        var start = MathF.Floor(CorrectionDim(_dims, hp.RopeOriginalContext, BetaFast, hp.RopeFreqBase));
        var end = MathF.Ceiling(CorrectionDim(_dims, hp.RopeOriginalContext, BetaSlow, hp.RopeFreqBase));
        _corr0 = MathF.Max(0, start);
        _corr1 = MathF.Min(_dims - 1, end);
    }

    public int PairCount => _dims / 2;

    /// <summary>cos/sin (already scaled by mscale) of every pair for position <paramref name="position"/>.</summary>
    public void Angles(int position, Span<float> cos, Span<float> sin)
    {
        var theta = (float)position;
        for (var i = 0; i < _dims / 2; i++)
        {
            var thetaExtrap = _freqDivisors is null ? theta : theta / _freqDivisors[i];
            var thetaInterp = _freqScale * thetaExtrap;
            var angle = thetaInterp;
            var mscale = _attnFactor;
            if (_extFactor != 0f)
            {
                var y = (i - _corr0) / MathF.Max(0.001f, _corr1 - _corr0);
                var rampMix = (1f - MathF.Min(1f, MathF.Max(0f, y))) * _extFactor;
                angle = thetaInterp * (1f - rampMix) + thetaExtrap * rampMix;
                mscale *= 1f + 0.1f * MathF.Log(1f / _freqScale);
            }
            cos[i] = MathF.Cos(angle) * mscale;
            sin[i] = MathF.Sin(angle) * mscale;
            theta *= _thetaScale; // iterative, f32, like ggml: not p·base^(-2i/n)
        }
    }

    /// <summary>Rotates <paramref name="heads"/> (heads × headDim, contiguous) in place with precomputed angles.</summary>
    public void Rotate(Span<float> heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        var half = _dims / 2;
        if (KernelIsa.Selected != InstructionSet.Scalar && Vector256.IsHardwareAccelerated && half % (_kind == RopeKind.Normal ? 4 : 8) == 0
            && half <= MaxVectorPairs)
            RotateVector(heads, headDim, cos, sin);
        else
            RotateScalar(heads, headDim, cos, sin);
    }

    /// <summary>The plain per-pair rotation (the reference the vector path is tested against).</summary>
    internal void RotateScalar(Span<float> heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        var half = _dims / 2;
        for (var h = 0; h + headDim <= heads.Length; h += headDim)
        {
            var v = heads.Slice(h, headDim);
            for (var i = 0; i < half; i++)
            {
                // Normal pairs adjacent values; NeoX pairs value i with value i + n_rot/2.
                int a, b;
                if (_kind == RopeKind.Normal)
                {
                    a = 2 * i;
                    b = 2 * i + 1;
                }
                else
                {
                    a = i;
                    b = i + half;
                }
                var x0 = v[a];
                var x1 = v[b];
                v[a] = x0 * cos[i] - x1 * sin[i];
                v[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }

    /// <summary>Pairs per head up to which <see cref="RotateVector"/> keeps its spread angles on the stack.</summary>
    private const int MaxVectorPairs = 256;

    /// <summary>
    /// <see cref="Rotate"/> eight floats at a time, with the same products and the same sums per value (a − b as
    /// a + (−b), x₀·sin + x₁·cos as x₁·cos + x₀·sin: both exact rewrites in IEEE arithmetic), so the same bits.
    /// Normal pairs: v·cos' + swap(v)·sin' with the angles spread to (cos, cos) and (−sin, sin) per pair; NeoX:
    /// the two halves of the rotated dimensions against cos and sin directly.
    /// </summary>
    private void RotateVector(Span<float> heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        var half = _dims / 2;
        if (_kind == RopeKind.Normal)
        {
            Span<float> cosPairs = stackalloc float[2 * half];
            Span<float> sinPairs = stackalloc float[2 * half];
            for (var i = 0; i < half; i++)
            {
                cosPairs[2 * i] = cos[i];
                cosPairs[2 * i + 1] = cos[i];
                sinPairs[2 * i] = -sin[i];
                sinPairs[2 * i + 1] = sin[i];
            }
            var swap = Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6);
            for (var h = 0; h + headDim <= heads.Length; h += headDim)
            {
                var v = heads.Slice(h, headDim);
                for (var i = 0; i < 2 * half; i += 8)
                {
                    var x = Vector256.Create<float>(v[i..]);
                    var rotated = x * Vector256.Create<float>(cosPairs[i..]) + Vector256.Shuffle(x, swap) * Vector256.Create<float>(sinPairs[i..]);
                    rotated.CopyTo(v[i..]);
                }
            }
            return;
        }
        for (var h = 0; h + headDim <= heads.Length; h += headDim)
        {
            var v = heads.Slice(h, headDim);
            for (var i = 0; i < half; i += 8)
            {
                var x0 = Vector256.Create<float>(v[i..]);
                var x1 = Vector256.Create<float>(v[(i + half)..]);
                var c = Vector256.Create<float>(cos[i..]);
                var s = Vector256.Create<float>(sin[i..]);
                (x0 * c - x1 * s).CopyTo(v[i..]);
                (x1 * c + x0 * s).CopyTo(v[(i + half)..]);
            }
        }
    }

    private static float CorrectionDim(int dims, int nCtxOrig, float beta, float freqBase) =>
        dims * MathF.Log(nCtxOrig / (beta * 2 * MathF.PI)) / (2 * MathF.Log(freqBase));
}
