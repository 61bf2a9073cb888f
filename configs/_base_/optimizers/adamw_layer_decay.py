# The ConvNeXt segmentation optimizer: AdamW (lr 1e-4, betas (0.9, 0.999),
# weight decay 0.05) with stage-wise layer-wise lr decay 0.9, in mixed
# precision (AmpOptimWrapper; the L and XL configs train in full precision).
# num_layers is 6 for ConvNeXt-T, the model of the base configs; the larger
# variants set 12. The lr schedule is in schedules/.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
