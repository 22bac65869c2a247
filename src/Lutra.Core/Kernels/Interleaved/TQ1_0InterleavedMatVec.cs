using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// TQ1_0 weights · Q8_K activations through <see cref="TQ2_0InterleavedMatVec"/>: at load every TQ1_0 block (five
/// trits per byte, 54 bytes) becomes the TQ2_0 block of the same trits and d (66 bytes), and the TQ2_0 rows are
/// repacked into its 16-row tiles. The copy is 66/54 of the GGUF bytes, but the 2-bit planes cost a shift and a
/// mask where base-3 digits cost a multiply each, so the kernel streams near bandwidth where TQ1_0's own kernels
/// do not. Rows after the last whole tile stay TQ2_0 rows (not TQ1_0): one stride, <see cref="RepackedRowBytes"/>,
/// holds for every row, so any row range starts at its row times the stride.
/// <para>
/// Exact: TQ1_0's trits are always 0, 1 or 2 and the reference dot is the same formula for both types
/// (Σ (t − 1)·a per super-block, times d·d_a, added in order), so the converted rows give
/// <see cref="QuantReference.Dot"/>'s TQ1_0 result bit for bit. Only a non-finite d in a tile row is refused.
/// </para>
/// </summary>
public sealed unsafe class TQ1_0InterleavedMatVec : MatVecKernel
{
    private const int SuperBlock = 256;
    private const int BlockBytes = 54;
    private const int TQ2_0BlockBytes = 66;
    private const int TileRows = InterleavedSteps.TileRows;

    private readonly TQ2_0InterleavedMatVec _tiles;

    public TQ1_0InterleavedMatVec(InstructionSet isa) : this(new TQ2_0InterleavedMatVec(isa))
    {
    }

    /// <summary>Over a given TQ2_0 kernel (tests force its plane extraction).</summary>
    public TQ1_0InterleavedMatVec(TQ2_0InterleavedMatVec tiles) : base(GgmlType.TQ1_0, tiles.Isa, $"{tiles.Name} as TQ2_0")
    {
        _tiles = tiles;
    }

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    public override long RepackedRowBytes(long rowBytes, int n) => rowBytes / BlockBytes * TQ2_0BlockBytes;

    public override int ActivationBytes(int n) => _tiles.ActivationBytes(n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) => _tiles.PrepareActivations(x, n, state);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y) =>
        _tiles.MatVec(weights, rowBytes, rows, state, n, y);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride) =>
        _tiles.MatMat(weights, rowBytes, rows, states, stateStride, tokens, n, y, yStride);

    /// <summary>
    /// Converts a tile (or the tail) at a time into a scratch of TQ2_0 rows, which the TQ2_0 kernel repacks into
    /// place. False, writing nothing, when the shape is not TQ1_0's or a tile row has a non-finite d.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        if (n <= 0 || n % SuperBlock != 0 || rowBytes != (long)n / SuperBlock * BlockBytes)
            return false;
        var tiles = rows / TileRows;
        var blocks = (long)tiles * TileRows * (n / SuperBlock);
        for (long i = 0; i < blocks; i++)
        {
            if ((*(ushort*)(source + i * BlockBytes + 52) & 0x7C00) == 0x7C00)
                return false;
        }
        var stride = RepackedRowBytes(rowBytes, n);
        var scratch = (byte*)NativeMemory.AlignedAlloc((nuint)(TileRows * stride), 64);
        try
        {
            for (var first = 0; first < rows; first += TileRows)
            {
                var count = Math.Min(TileRows, rows - first);
                for (var r = 0; r < count; r++)
                    ToTQ2_0(source + (first + r) * rowBytes, scratch + r * stride, n / SuperBlock);
                if (!_tiles.TryPrepareWeights(scratch, stride, count, n, destination + first * stride))
                    throw new InvalidOperationException("the TQ2_0 tiles refused trits converted from TQ1_0");
            }
        }
        finally
        {
            NativeMemory.AlignedFree(scratch);
        }
        return true;
    }

    /// <summary>One row of TQ1_0 blocks as TQ2_0 blocks: qs byte 32h + m holds the codes of elements 128h + 32p + m at bits 2p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ToTQ2_0(byte* row, byte* destination, int blocks)
    {
        var trits = stackalloc byte[SuperBlock];
        for (var b = 0; b < blocks; b++)
        {
            var block = row + b * BlockBytes;
            var target = destination + b * TQ2_0BlockBytes;
            TQ1_0Reference.Unpack(block, trits);
            for (var h = 0; h < 2; h++)
            {
                for (var m = 0; m < 32; m++)
                {
                    var e = 128 * h + m;
                    target[32 * h + m] = (byte)(trits[e] | trits[e + 32] << 2 | trits[e + 64] << 4 | trits[e + 96] << 6);
                }
            }
            *(ushort*)(target + 64) = *(ushort*)(block + 52);
        }
    }
}
