using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using static Lutra.Core.Tests.TestVectors;

namespace Lutra.Core.Tests;

/// <summary>Every kernel in the table against the scalar reference, under every instruction set this machine runs.</summary>
public unsafe class KernelTableTests
{
    public static TheoryData<GgmlType, InstructionSet> TypesAndIsas()
    {
        var data = new TheoryData<GgmlType, InstructionSet>();
        foreach (var info in QuantTypes.All)
        {
            if (!info.IsSupported || info.Type is GgmlType.Q8_1 or GgmlType.Q8_K)
                continue;
            foreach (var isa in KernelIsa.Supported)
                data.Add(info.Type, isa);
        }
        return data;
    }

    /// <summary>64-byte aligned native buffer, as the runtime allocates activation state.</summary>
    private sealed class Aligned : IDisposable
    {
        public Aligned(int bytes)
        {
            Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 64), 64);
            Length = bytes;
            new Span<byte>(Pointer, bytes).Fill(0xCD);
        }

        public byte* Pointer { get; }
        public int Length { get; }
        public Span<byte> Span => new(Pointer, Length);
        public void Dispose() => NativeMemory.AlignedFree(Pointer);
    }

    [Theory]
    [MemberData(nameof(TypesAndIsas))]
    public void Prepared_activations_start_with_the_reference_conversion_bit_for_bit(GgmlType type, InstructionSet isa)
    {
        var kernel = KernelTable.Get(type, isa);
        var rng = new Random(1234);
        var n = 4 * 256 + (QuantTypes.Get(type).BlockSize == 32 ? 32 : 0);
        foreach (var scale in new[] { 1f, 1e-3f, 300f, 0f })
        {
            var x = RandomRow(rng, n, scale);
            if (scale != 0)
            {
                x[7] = 0;
                x[40] = -scale; // an extreme of each sign
                x[41] = scale;
            }
            var expected = new byte[kernel.StandardActivationBytes(n)];
            QuantReference.QuantizeActivations(kernel.ActivationType, x, expected);
            using var state = new Aligned(kernel.ActivationBytes(n));
            fixed (float* px = x)
                kernel.PrepareActivations(px, n, state.Pointer);
            Assert.Equal(expected, state.Span[..expected.Length].ToArray());
        }
    }

    [Theory]
    [MemberData(nameof(TypesAndIsas))]
    public void MatVec_matches_the_reference_dot_of_every_row(GgmlType type, InstructionSet isa)
    {
        var info = QuantTypes.Get(type);
        var kernel = KernelTable.Get(type, isa);
        var rng = new Random(99);
        // Block counts that are odd, even, and not multiples of any tile; row counts around the 4-row tile.
        foreach (var (blocks, rows) in new[] { (1, 1), (2, 3), (3, 4), (7, 5), (16, 9), (33, 7) })
        {
            var n = blocks * Math.Max(info.BlockSize, 256);
            var rowBytes = (int)info.RowBytes(n);
            var weights = new byte[rowBytes * rows];
            for (var r = 0; r < rows; r++)
                QuantReference.Quantize(type, RandomRow(rng, n, 0.5f), weights.AsSpan(r * rowBytes, rowBytes));
            var x = RandomRow(rng, n, 2f);
            using var state = new Aligned(kernel.ActivationBytes(n));
            var y = new float[rows];
            fixed (float* px = x)
            fixed (byte* pw = weights)
            fixed (float* py = y)
            {
                kernel.PrepareActivations(px, n, state.Pointer);
                kernel.MatVec(pw, rowBytes, rows, state.Pointer, n, py);
            }
            var activations = state.Span[..kernel.StandardActivationBytes(n)].ToArray();
            var wf = new float[n];
            var af = new float[n];
            QuantReference.Dequantize(kernel.ActivationType, activations, af);
            for (var r = 0; r < rows; r++)
            {
                var row = weights.AsSpan(r * rowBytes, rowBytes);
                var expected = QuantReference.Dot(type, row, activations, n);
                // Integer block sums are exact; only the order of the float combination differs, so the bound
                // is a few ulps of the sum of magnitudes.
                QuantReference.Dequantize(type, row, wf);
                var magnitude = 0.0;
                for (var i = 0; i < n; i++)
                    magnitude += Math.Abs((double)wf[i] * af[i]);
                Assert.True(Math.Abs(expected - y[r]) <= 1e-5 * magnitude + 1e-6,
                    $"{kernel} n={n} row {r}/{rows}: reference {expected}, kernel {y[r]}, sum |w*a| {magnitude}");
            }
        }
    }
}
