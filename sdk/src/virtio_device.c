/* The device ops of a virtio device plugin, SMOLVM_VIRTIO_DEVICE_OPS() in
 * <smolvm/virtio.h>: the transport does what every virtio device does on
 * destroy, reset, pause, resume, save and restore, and calls the device's
 * hooks in struct smolvm_virtio_ops for the rest. `dev` is the instance,
 * which starts with its struct smolvm_virtio_dev. */
#include <stdlib.h>

#include <smolvm/virtio.h>

void smolvm_virtio_dev_destroy(void *dev)
{
	struct smolvm_virtio_dev *vd = dev;

	if (vd->ops->destroy)
		vd->ops->destroy(vd->dev);
	smolvm_virtio_cleanup(vd);
	free(dev);
}

void smolvm_virtio_dev_reset(void *dev)
{
	smolvm_virtio_reset(dev);
}

void smolvm_virtio_dev_pause(void *dev)
{
	smolvm_virtio_pause(dev);
}

void smolvm_virtio_dev_resume(void *dev)
{
	smolvm_virtio_resume(dev);
}

int smolvm_virtio_dev_save(void *dev, struct smolvm_state_writer *w)
{
	struct smolvm_virtio_dev *vd = dev;
	struct smolvm_state_out o;
	int rc = 0, done;

	smolvm_state_out_init(&o, vd->api, vd->ctx, w);
	pthread_mutex_lock(&vd->notify_lock);
	if (vd->ops->save)
		rc = vd->ops->save(vd->dev, &o);
	else
		smolvm_virtio_put_state(vd, &o);
	pthread_mutex_unlock(&vd->notify_lock);
	done = smolvm_state_out_done(&o); /* a write failure the hook did not report */
	return rc ? rc : done;
}

int smolvm_virtio_dev_restore(void *dev, struct smolvm_state_reader *r, uint32_t version)
{
	struct smolvm_virtio_dev *vd = dev;
	struct smolvm_state_in in;
	int rc;

	smolvm_state_in_init(&in, vd->api, vd->ctx, r);
	pthread_mutex_lock(&vd->notify_lock);
	if (vd->ops->restore)
		rc = vd->ops->restore(vd->dev, &in, version);
	else
		rc = smolvm_virtio_get_state(vd, &in);
	smolvm_state_in_done(&in);
	pthread_mutex_unlock(&vd->notify_lock);
	return rc;
}
